"""Enum values a client cannot have meant (issue 8, item 7).

ListVms{"states":["vm_state_running"]} (a name that does not exist: enum names
are case-sensitive) used to list every VM: the JSON decoder dropped unknown
enum names, as connect-go's DiscardUnknown does, so the filter arrived empty.
Unknown names are now invalid_argument wherever an enum appears; numbers are
open in proto3 (any int32 decodes) and the API refuses those that name no
state; numbers outside int32 are not enum values at all.
"""

import pytest

from hostile import call, unix_call

KERNEL_CFG = lambda d: {  # noqa: E731
    "payload": {"kernel": d.kernel},
    "cpus": {"bootVcpus": 1},
    "memory": {"size": "67108864"},
}


@pytest.fixture(scope="module")
def two_vms():
    """A daemon with one running and one created VM."""
    from harness import Daemon, standin_bin
    import os

    if not os.access(standin_bin(), os.X_OK):
        pytest.fail("CH stand-in missing at %s (make hostile-test builds it)" % standin_bin())
    d = Daemon(vmm=True).start()
    try:
        for vm in ("en-running", "en-created"):
            status, doc = call(d, "CreateVm", {"vmId": vm, "config": KERNEL_CFG(d)})
            assert status == 200, doc
        status, doc = call(d, "BootVm", {"vmId": "en-running"})
        assert status == 200 and doc["vm"]["state"] == "VM_STATE_RUNNING", doc
        yield d
        for vm in ("en-running", "en-created"):
            call(d, "DeleteVm", {"vmId": vm})
        d.stop()
    finally:
        d.cleanup()


def ids(doc):
    return sorted(v["vmId"] for v in doc.get("vms", []))


def test_known_state_filters(two_vms):
    status, doc = call(two_vms, "ListVms", {"states": ["VM_STATE_RUNNING"]})
    assert status == 200 and ids(doc) == ["en-running"], doc
    status, doc = call(two_vms, "ListVms", {"states": [4, "VM_STATE_CREATED"]})
    assert status == 200 and ids(doc) == ["en-created", "en-running"], doc


@pytest.mark.parametrize("states, fragment", [
    (["vm_state_running"], 'states[0]": unknown cloudhypervisor.v1.VmState name "vm_state_running"'),
    (["VM_STATE_RUNNING", "RUNNING"], 'states[1]": unknown cloudhypervisor.v1.VmState name "RUNNING"'),
    (["4"], 'unknown cloudhypervisor.v1.VmState name "4"'),
    ([""], 'unknown cloudhypervisor.v1.VmState name ""'),
    ([99], "states[0]: unknown state 99"),
    ([-1], "states[0]: unknown state -1"),
    ([2147483648], "not a valid enum number"),
    ([4.5], "not a valid enum number"),
])
def test_unknown_states_are_invalid_argument(two_vms, states, fragment):
    for via in (call, unix_call):
        status, doc = via(two_vms, "ListVms", {"states": states})
        assert status == 400, (states, doc)
        assert doc["code"] == "invalid_argument", doc
        assert fragment in doc["message"], doc


def test_unknown_enum_in_create_is_invalid_argument(two_vms):
    """The same rule for enums inside a VM configuration: an unknown console
    mode or disk image type never silently becomes the default one."""
    cfg = KERNEL_CFG(two_vms)
    cfg["console"] = {"mode": "CONSOLE_MODE_SOMETHING_NEW"}
    status, doc = call(two_vms, "CreateVm", {"vmId": "en-console", "config": cfg})
    assert status == 400 and doc["code"] == "invalid_argument", doc
    assert 'config.console.mode": unknown cloudhypervisor.v1.ConsoleMode name' in doc["message"], doc
    status, doc = call(two_vms, "GetVmInfo", {"vmId": "en-console"})
    assert status == 404, doc
