"""vm_calls.py - a VM's whole life as VmService calls, and what each answers.

The client suites (buf curl, connect-es) run CALLS in order, over every
protocol and transport, against a daemon that spawns the Cloud Hypervisor
stand-in (tests/ch-standin) and allows one image directory holding a fake
kernel. Each step expects either success with some response fields (dotted
paths into the proto3 JSON response) or an exact Connect error code.
"""

VM_ID = "it-vm-1"


def calls(kernel):
    """[(method, request as proto3 JSON, expectation)] for a kernel path."""
    state = lambda s: {"vm.vmId": VM_ID, "vm.state": s}  # noqa: E731
    return [
        ("CreateVm", {
            "vmId": VM_ID,
            "config": {
                "payload": {"kernel": kernel, "cmdline": "console=hvc0"},
                "cpus": {"bootVcpus": 1, "maxVcpus": 1},
                "memory": {"size": "67108864"},
            },
            "labels": {"suite": "integration"},
        }, {**state("VM_STATE_CREATED"), "vm.config.memory.size": "67108864",
            "vm.labels.suite": "integration"}),
        ("BootVm", {"vmId": VM_ID}, state("VM_STATE_RUNNING")),
        ("PauseVm", {"vmId": VM_ID}, state("VM_STATE_PAUSED")),
        ("ResumeVm", {"vmId": VM_ID}, state("VM_STATE_RUNNING")),
        ("RebootVm", {"vmId": VM_ID}, state("VM_STATE_RUNNING")),
        ("ShutdownVm", {"vmId": VM_ID, "force": True, "gracefulTimeout": "1.500s"},
         state("VM_STATE_SHUTDOWN")),
        ("GetVmInfo", {"vmId": VM_ID}, state("VM_STATE_SHUTDOWN")),
        ("ListVms", {"pageSize": 10, "states": ["VM_STATE_SHUTDOWN"], "labels": {"suite": "integration"}},
         {"vms.0.vmId": VM_ID, "vms.length": 1}),
        ("ListVms", {"states": ["VM_STATE_RUNNING"]}, {"vms.length": 0}),
        ("DeleteVm", {"vmId": VM_ID}, {"vmId": VM_ID}),
        # Errors, exactly.
        ("GetVmInfo", {"vmId": VM_ID}, "not_found"),
        ("BootVm", {"vmId": "never-created"}, "not_found"),
        ("CreateVm", {"vmId": "Not_A_DNS_Label", "config": {"payload": {"kernel": kernel}}},
         "invalid_argument"),
        ("CreateVm", {"vmId": "outside", "config": {"payload": {"kernel": "/etc/passwd"}}},
         "permission_denied"),
        ("ListVms", {}, {"vms.length": 0}),
    ]


def lookup(doc, path):
    """Follow a dotted path ("vms.0.vmId"; "x.length" counts a list; an
    absent list is empty, as proto3 JSON omits it)."""
    cur = doc
    for part in path.split("."):
        if part == "length":
            return len(cur or [])
        if isinstance(cur, list):
            cur = cur[int(part)] if int(part) < len(cur) else None
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def check(method, expect, code, result, where):
    """Compare one call's outcome (code "ok" + response, or error code +
    message) with its expectation; raise AssertionError naming the call."""
    if isinstance(expect, str):
        assert code == expect, "%s over %s: got %s (%s), want %s" % (method, where, code, result, expect)
        return
    assert code == "ok", "%s over %s: got %s (%s), want success" % (method, where, code, result)
    for path, want in expect.items():
        got = lookup(result, path)
        assert got == want, "%s over %s: %s is %r, want %r (response %s)" % (
            method, where, path, got, want, result)
