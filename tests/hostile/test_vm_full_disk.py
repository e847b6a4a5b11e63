"""DeleteVm on a full disk (issue 8): the deletion's intent cannot be made
durable, so the VMM is left alone and DeleteVm answers `unavailable`; once
there is room again the deletion finishes by itself. A daemon killed in
between finds the VM as it was (running), never CRASHED.

The state directory is a small tmpfs (root only, like `make test`)."""

import errno
import os
import subprocess
import time

import pytest

from harness import Daemon, assert_no_sanitizer_reports, standin_bin
from vmlib import RpcError, alive, call, create_and_boot, restart, vm, vmm_pids


@pytest.fixture
def tmpfs_daemon():
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs as the state directory")
    d = Daemon(vmm=True)
    # State and images on one small file system (images are hard-linked
    # into VM directories, docs/security.md).
    fs = os.path.join(d.tmp.name, "fs")
    os.mkdir(fs, 0o700)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", fs],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.strip())
    try:
        d.state_dir = d.env["CHCP_STATE_DIR"] = os.path.join(fs, "state")
        d.image_dir = d.env["CHCP_IMAGE_DIRS"] = os.path.join(fs, "images")
        os.mkdir(d.image_dir)
        d.kernel = os.path.join(d.image_dir, "vmlinux")
        with open(d.kernel, "wb") as f:
            f.write(b"\x7fELF fake kernel")
        yield d.start()
    finally:
        for pid in vmm_pids(d.state_dir) if os.path.isdir(os.path.join(d.state_dir, "vms")) else []:
            os.kill(pid, 9)
        if d.proc and d.proc.poll() is None:
            d.stop()
        d.kill()
        subprocess.run(["umount", "-l", fs])
        d.cleanup()


def fill(d):
    """Fill the state directory's file system; returns the filler's path."""
    path = os.path.join(os.path.dirname(d.state_dir), "filler")
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return path


def test_delete_on_full_disk_finishes_later(tmpfs_daemon):
    d = tmpfs_daemon
    assert os.path.exists(standin_bin())
    pid = create_and_boot(d, "full")["vmmPid"]
    filler = fill(d)
    try:
        call(d, "DeleteVm", {"vmId": "full"})
        raise AssertionError("DeleteVm succeeded on a full disk")
    except RpcError as e:
        assert e.code == "unavailable" and "recording the deletion failed" in e.message, e
    v = vm(d, "full")
    assert v["state"] == "VM_STATE_DELETING", v
    assert alive(pid), "the VMM must be left alone while the intent is not durable"
    # A repeated DeleteVm joins the pending deletion and is answered too.
    try:
        call(d, "DeleteVm", {"vmId": "full"})
    except RpcError as e:
        assert e.code == "unavailable", e
    os.unlink(filler)
    deadline = time.monotonic() + 15
    while call(d, "ListVms", {}).get("vms"):
        assert time.monotonic() < deadline, call(d, "ListVms", {})
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, "VMM not stopped"
        time.sleep(0.05)
    assert not os.path.exists(os.path.join(d.state_dir, "vms", "full"))
    assert_no_sanitizer_reports(d.output())


def test_delete_on_full_disk_then_crash(tmpfs_daemon):
    d = tmpfs_daemon
    pid = create_and_boot(d, "keep")["vmmPid"]
    filler = fill(d)
    try:
        call(d, "DeleteVm", {"vmId": "keep"})
        raise AssertionError("DeleteVm succeeded on a full disk")
    except RpcError as e:
        assert e.code == "unavailable", e
    d.kill()
    os.unlink(filler)
    restart(d)
    v = vm(d, "keep")
    # Before the fix: CRASHED ("VMM exited while chcp-api was not running"),
    # the VMM stopped behind a record that said RUNNING.
    assert v["state"] == "VM_STATE_RUNNING" and v["vmmPid"] == pid, v
    assert alive(pid)
    call(d, "DeleteVm", {"vmId": "keep"})
    assert call(d, "ListVms", {}).get("vms", []) == []
