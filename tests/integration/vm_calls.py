"""vm_calls.py - one call of every VmService method and what chcp answers.

The end-to-end client tests (buf curl, connect-es) run these calls over
every protocol and transport. Until the VM lifecycle work lands every method
answers `unimplemented`; that work updates EXPECTED (and the requests) here,
and the client tests then check real results without other changes.
"""

VM_ID = "it-vm-1"

# (method, request as proto3 JSON)
CALLS = [
    ("CreateVm", {
        "vmId": VM_ID,
        "config": {
            "cpus": {"bootVcpus": 1, "maxVcpus": 1},
            "memory": {"size": "134217728"},
            "payload": {"kernel": "/nonexistent/vmlinux"},
        },
        "labels": {"suite": "integration"},
    }),
    ("BootVm", {"vmId": VM_ID}),
    ("PauseVm", {"vmId": VM_ID}),
    ("ResumeVm", {"vmId": VM_ID}),
    ("RebootVm", {"vmId": VM_ID}),
    ("ShutdownVm", {"vmId": VM_ID, "force": True, "gracefulTimeout": "1.500s"}),
    ("GetVmInfo", {"vmId": VM_ID}),
    ("ListVms", {"pageSize": 10, "states": ["VM_STATE_RUNNING"], "labels": {"suite": "integration"}}),
    ("DeleteVm", {"vmId": VM_ID}),
]

# method -> the Connect error code expected, or None for success. The
# integration daemon has no image directories (CHCP_IMAGE_DIRS unset), so no
# client path is allowed and CreateVm is refused before anything starts; the
# VM then does not exist for the other calls, and ListVms returns nothing.
# The VM lifecycle itself is covered by tests/e2e/ against the CH stand-in.
EXPECTED = {method: "not_found" for method, _ in CALLS}
EXPECTED["CreateVm"] = "permission_denied"
EXPECTED["ListVms"] = None
