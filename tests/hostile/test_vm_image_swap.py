"""Image paths are checked right before every boot and the VMM never
resolves a client-controlled name (issue 8, item 6; docs/security.md "Image
paths"). Before: paths were checked only at CreateVm, so a disk swapped for
a symlink out of CHCP_IMAGE_DIRS before BootVm made the VMM open the
outside file."""

import os
import signal
import time

from vmlib import (call, expect_error, vm, vm_daemon_factory, vm_dir,  # noqa: F401
                   vmm_state, wait_state)


def swap_for_symlink(path, target):
    tmp = path + ".swap"
    os.symlink(target, tmp)
    os.rename(tmp, path)


def same_file(a, b):
    x, y = os.stat(a), os.stat(b)
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


def test_disk_swapped_before_boot(vm_daemon_factory):
    d = vm_daemon_factory()
    disk = os.path.join(d.image_dir, "disk.img")
    with open(disk, "wb") as f:
        f.write(b"\0" * 4096)
    secret = os.path.join(os.path.dirname(d.image_dir), "secret.img")
    with open(secret, "wb") as f:
        f.write(b"not yours" * 512)
    cfg = {"payload": {"kernel": d.kernel}, "disks": [{"path": disk}]}
    call(d, "CreateVm", {"vmId": "swap", "config": cfg})

    swap_for_symlink(disk, secret)
    msg = expect_error(d, "BootVm", {"vmId": "swap"}, "permission_denied")
    assert "config.disks[0].path" in msg and "outside the image directories" in msg, msg
    assert vm(d, "swap")["state"] == "VM_STATE_CREATED"

    # A plain file again: it boots, and the VMM only holds names in the VM
    # directory, each the very file the client path named at boot.
    os.unlink(disk)
    with open(disk, "wb") as f:
        f.write(b"\1" * 4096)
    assert call(d, "BootVm", {"vmId": "swap"})["vm"]["state"] == "VM_STATE_RUNNING"
    conf = vmm_state(d, "swap")["config"]
    images = os.path.join(vm_dir(d, "swap"), "images")
    assert conf["payload"]["kernel"] == os.path.join(images, "kernel"), conf
    assert conf["disks"][0]["path"] == os.path.join(images, "disk-0"), conf
    assert same_file(conf["disks"][0]["path"], disk)
    assert same_file(conf["payload"]["kernel"], d.kernel)
    # GetVmInfo still shows what the client asked for.
    assert vm(d, "swap")["config"]["disks"][0]["path"] == disk


def test_swap_while_running(vm_daemon_factory):
    """A guest-initiated reboot reopens the staged names (unaffected by a
    swap); RebootVm checks again and refuses."""
    d = vm_daemon_factory()
    v = call(d, "CreateVm", {"vmId": "run", "config": {"payload": {"kernel": d.kernel}}})["vm"]
    pid = call(d, "BootVm", {"vmId": "run"})["vm"]["vmmPid"]
    # Out of the image directory, and to nothing at all: a VMM that resolved
    # the client's name would fail its reboot ("Cannot open kernel file").
    swap_for_symlink(d.kernel, "/nonexistent/vmlinux")
    os.kill(pid, signal.SIGUSR2)  # the stand-in's guest reboots
    deadline = time.monotonic() + 10
    while vm(d, "run")["stateReason"] != "guest rebooted":
        assert time.monotonic() < deadline, vm(d, "run")
        time.sleep(0.05)
    assert vm(d, "run")["state"] == "VM_STATE_RUNNING" and vmm_state(d, "run")["state"] == "Running"
    msg = expect_error(d, "RebootVm", {"vmId": "run"}, "permission_denied")
    assert "config.payload.kernel" in msg, msg
    wait_state(d, "run", "VM_STATE_RUNNING")
    assert v["vmId"] == "run"
