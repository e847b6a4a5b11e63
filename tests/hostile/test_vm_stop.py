"""SIGTERM while a graceful ShutdownVm waits for its guest (issue 8, item 4).

The daemon must end the wait at once (its timers stopped, its pending VMM
calls cancelled, no freed VMM handle touched), answer the ShutdownVm with
`unavailable`, exit 0 within CHCP_SHUTDOWN_TIMEOUT_MS instead of the graceful
timeout, and leave the VM running for the next start, which re-adopts it.
"""

import signal
import threading
import time

from harness import assert_no_sanitizer_reports
from vmlib import (RpcError, alive, call, create_and_boot, restart, vm,  # noqa: F401
                   vm_daemon_factory, wait_state)


def test_sigterm_during_graceful_shutdown(vm_daemon_factory):
    d = vm_daemon_factory(env={"CHCP_SHUTDOWN_TIMEOUT_MS": "1000"})
    pid = create_and_boot(d, "stubborn", "standin.ignore_power_button=1")["vmmPid"]
    # A second VM whose VMM call hangs: its pending vm.pause is cancelled.
    create_and_boot(d, "stuck", "standin.hang_on=pause")
    out = {}

    def run(name, method, req):
        try:
            out[name] = call(d, method, req, timeout=60)
        except RpcError as e:
            out[name] = e

    threads = [
        threading.Thread(target=run, args=("sd", "ShutdownVm",
                                           {"vmId": "stubborn", "gracefulTimeout": "60s"})),
        threading.Thread(target=run, args=("pause", "PauseVm", {"vmId": "stuck"})),
    ]
    for t in threads:
        t.start()
    wait_state(d, "stubborn", "VM_STATE_SHUTTING_DOWN")
    time.sleep(0.2)  # the vm.pause reaches the stand-in and hangs there
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait(timeout=30)
    took = time.monotonic() - t0
    for t in threads:
        t.join(10)
    assert_no_sanitizer_reports(d.output())
    assert rc == 0, d.output()[-4000:]
    # Well before the 60 s graceful timeout (the limit is the 1 s drain).
    assert took < 20, took
    assert isinstance(out["sd"], RpcError) and out["sd"].code == "unavailable", out
    assert "power off" in out["sd"].message, out["sd"]
    assert isinstance(out["pause"], RpcError) and out["pause"].code == "unavailable", out
    assert alive(pid), "the VMM must keep running"

    # The next start re-adopts it; the interrupted shutdown left it running.
    restart(d)
    v = vm(d, "stubborn")
    assert v["state"] == "VM_STATE_RUNNING" and v["vmmPid"] == pid, v
    call(d, "ShutdownVm", {"vmId": "stubborn", "force": True})
    assert vm(d, "stubborn")["state"] == "VM_STATE_SHUTDOWN"
