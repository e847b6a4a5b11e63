"""An adopted VMM that is killed reports the signal (issue 8): after a
restart the VMM is no longer the daemon's child, so waitid() cannot tell;
its pidfd (Linux >= 6.15, once reaped) or /proc (while it is a zombie) can.
Before, the VM read "VMM exited with code -1"."""

import os
import signal

from vmlib import alive, create_and_boot, restart, vm, vm_daemon_factory, wait_state  # noqa: F401


def test_adopted_vmm_killed_reports_signal(vm_daemon_factory):
    d = vm_daemon_factory()
    pid = create_and_boot(d, "victim")["vmmPid"]
    restart(d)  # kill -9: the VMM is re-adopted, no longer our child
    assert vm(d, "victim")["vmmPid"] == pid
    os.kill(pid, signal.SIGKILL)
    v = wait_state(d, "victim", "VM_STATE_CRASHED")
    assert v["vmmExit"].get("signal") == signal.SIGKILL, v
    assert v["stateReason"].startswith("VMM killed by signal 9 (KILL)"), v
    assert not alive(pid)
