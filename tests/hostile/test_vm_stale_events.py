"""Late VMM events never change a VM's state (issue 8, item 5).

Cloud Hypervisor hands events to a monitor thread, so an event can reach
chcp after the API reply of the call that caused it; the stand-in's
`event_delay_ms` reproduces that. Boot -> Shutdown{force} -> Boot ->
Shutdown{graceful}: the forced shutdown's vm/shutdown arrives during the
graceful wait and must not be taken for this guest's poweroff; the next
BootVm must not turn the running VM FAILED. The same after a kill -9 of the
daemon, when the adopted VMM's event file still receives the stale event.
"""

import time

from vmlib import (call, create_and_boot, restart, vm, vm_daemon_factory,  # noqa: F401
                   vmm_state)

# The guest ignores the power button, so the graceful shutdown can only end
# by its timeout (then forced); events arrive DELAY_MS late.
DELAY_MS = 400
CMDLINE = "standin.event_delay_ms=%d standin.ignore_power_button=1" % DELAY_MS


def graceful_shutdown_is_real(d, vm_id, grace_s):
    t0 = time.monotonic()
    v = call(d, "ShutdownVm", {"vmId": vm_id, "gracefulTimeout": "%ds" % grace_s})["vm"]
    took = time.monotonic() - t0
    assert v["state"] == "VM_STATE_SHUTDOWN", v
    # SHUTDOWN is true: the VMM agrees. (Before the fix the stale event ended
    # the wait early with the VMM still Running.)
    assert vmm_state(d, vm_id)["state"] in ("Created", "Shutdown")
    assert took >= grace_s * 0.9, "the wait ended early (%.2f s): a stale event was believed" % took
    # The next BootVm boots; it does not turn a running VM FAILED.
    v = call(d, "BootVm", {"vmId": vm_id})["vm"]
    assert v["state"] == "VM_STATE_RUNNING", v
    assert vmm_state(d, vm_id)["state"] == "Running"


def test_late_shutdown_event(vm_daemon_factory):
    d = vm_daemon_factory()
    create_and_boot(d, "late", CMDLINE)
    call(d, "ShutdownVm", {"vmId": "late", "force": True})
    call(d, "BootVm", {"vmId": "late"})
    graceful_shutdown_is_real(d, "late", 1)
    # Once the late event is in, nothing changed either.
    time.sleep(DELAY_MS * 2 / 1000)
    v = vm(d, "late")
    assert v["state"] == "VM_STATE_RUNNING", v


def test_late_shutdown_event_after_restart(vm_daemon_factory):
    """The stale event lands in the event file after the daemon was killed
    and restarted: the adopted VMM's events are confirmed the same way."""
    d = vm_daemon_factory()
    slow = "standin.event_delay_ms=2500 standin.ignore_power_button=1"
    pid = create_and_boot(d, "adopted", slow)["vmmPid"]
    call(d, "ShutdownVm", {"vmId": "adopted", "force": True})
    call(d, "BootVm", {"vmId": "adopted"})
    restart(d)  # kill -9, the delayed vm/shutdown is still on its way
    v = vm(d, "adopted")
    assert v["state"] == "VM_STATE_RUNNING" and v["vmmPid"] == pid, v
    graceful_shutdown_is_real(d, "adopted", 3)
    time.sleep(0.5)
    assert vm(d, "adopted")["state"] == "VM_STATE_RUNNING"


def test_real_poweroff_still_seen(vm_daemon_factory):
    """The confirmation does not hide a real guest poweroff, late or not."""
    d = vm_daemon_factory()
    create_and_boot(d, "real", "standin.event_delay_ms=%d standin.poweroff_after_ms=100" % DELAY_MS)
    deadline = time.monotonic() + 10
    while vm(d, "real")["state"] != "VM_STATE_SHUTDOWN":
        assert time.monotonic() < deadline, vm(d, "real")
        time.sleep(0.05)
    assert vm(d, "real")["stateReason"] == "guest powered off"
    # A graceful ShutdownVm whose guest honours the button ends early.
    create_and_boot(d, "acpi", "standin.event_delay_ms=%d" % DELAY_MS)
    t0 = time.monotonic()
    v = call(d, "ShutdownVm", {"vmId": "acpi", "gracefulTimeout": "30s"})["vm"]
    assert v["state"] == "VM_STATE_SHUTDOWN" and time.monotonic() - t0 < 15, v
