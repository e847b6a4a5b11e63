"""vmlib.py - helpers for the VM lifecycle reproductions (test_vm_*.py): JSON
VmService calls, a kill -9 + restart of the same daemon over the same state
directory, and looking at a VM's stand-in VMM directly (its socket and
process).
"""

import json
import os
import signal
import sys
import time

import pytest

# The crash suite's helpers look at VMMs directly (their socket, /proc).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crash"))
from chcp import SERVICE, RpcError, vmm_info, vmm_processes  # noqa: E402,F401


def call(d, method, req, timeout=30):
    """One Connect JSON call; returns the response or raises RpcError."""
    status, _, body = d.http("POST", SERVICE + method, body=json.dumps(req).encode(),
                             headers={"Content-Type": "application/json"}, timeout=timeout)
    out = json.loads(body or b"{}")
    if status != 200:
        raise RpcError(out.get("code", "unknown"), out.get("message", ""))
    return out


def expect_error(d, method, req, code):
    try:
        call(d, method, req)
    except RpcError as e:
        assert e.code == code, "%s: want %s, got %s" % (method, code, e)
        return e.message
    raise AssertionError("%s %r succeeded, want %s" % (method, req, code))


def vm(d, vm_id):
    return call(d, "GetVmInfo", {"vmId": vm_id})["vm"]


def create_and_boot(d, vm_id, cmdline="", config=None):
    cfg = config or {"payload": {"kernel": d.kernel, "cmdline": ("console=hvc0 " + cmdline).strip()}}
    call(d, "CreateVm", {"vmId": vm_id, "config": cfg})
    return call(d, "BootVm", {"vmId": vm_id})["vm"]


def vm_dir(d, vm_id):
    return os.path.join(d.state_dir, "vms", vm_id)


def vmm_state(d, vm_id):
    """vm.info's answer, asked on the VMM's own socket."""
    status, info = vmm_info(os.path.join(vm_dir(d, vm_id), "api.sock"))
    assert status == 200, (status, info)
    return info


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def restart(d, kill=True):
    """Stop the daemon (SIGKILL by default, or a clean SIGTERM) and start it
    again over the same state directory; the earlier log is kept aside."""
    if kill:
        d.kill()
    else:
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    d._log.close()
    n = 1
    while os.path.exists("%s.%d" % (d.log_path, n)):
        n += 1
    os.rename(d.log_path, "%s.%d" % (d.log_path, n))
    return d.start()


def wait_state(d, vm_id, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = vm(d, vm_id)
        if v["state"] == want:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s stayed %s (want %s): %r" % (vm_id, v["state"], want, v))
        time.sleep(0.02)


def vmm_pids(state_dir):
    """Pids of the processes holding an event file under <state_dir>/vms."""
    return list(vmm_processes(os.path.join(state_dir, "vms")))


@pytest.fixture
def vm_daemon_factory(start_daemon):
    """start_daemon(vmm=True, ...) whose VMMs are killed at the end: VMMs
    outlive the daemon by design, so a test must not leave them behind."""
    started = []

    def start(env=None):
        d = start_daemon(vmm=True, env=env)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.stop()
            d.exit_checked = True
        for pid in vmm_pids(d.state_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
