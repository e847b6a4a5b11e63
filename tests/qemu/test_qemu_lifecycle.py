"""The QEMU pieces of chcp (spawn, argv, QMP client) against a real QEMU and a
real Linux guest under TCG: -S then cont, pause/resume, reset, the ACPI power
button, guest panic, QEMU dying, start failures."""
import os

from conftest import guest, linux_args, make_seed

READY = "chcp-guest: ready"


def booted(vm):
    vm.ready()
    vm.wait_console(READY)


def test_prelaunch_then_cont_boots_the_guest(vm_factory):
    vm = vm_factory(linux_args())
    spawned = vm.wait(lambda m: "spawned" in m)["spawned"]
    assert spawned["accel"] == "tcg" and spawned["qmp"].endswith("/qmp.sock")
    version = vm.ready()["version"]
    assert version["qemu"]["major"] >= 7
    # -S: nothing runs before cont
    assert vm.status() == "prelaunch"
    assert "chcp-guest" not in vm.console()
    mark = vm.mark()
    vm.qmp("cont")
    vm.event("RESUME", start=mark)
    vm.wait_console(READY)
    st = vm.qmp("query-status")
    assert st["status"] == "running" and st["running"] is True
    # the serial console went to the VM directory, QEMU's stderr too
    assert os.path.exists(os.path.join(vm.dir, "qemu.stderr"))


def test_stop_and_cont(vm_factory):
    vm = vm_factory(linux_args("--cont"))
    booted(vm)
    mark = vm.mark()
    vm.qmp("stop")
    vm.event("STOP", start=mark)
    assert vm.status() == "paused"
    mark = vm.mark()
    vm.qmp("cont")
    vm.event("RESUME", start=mark)
    assert vm.status() == "running"
    # cont on a running VM is a no-op that succeeds (resume is idempotent)
    assert vm.qmp("cont") == {}


def test_system_reset_boots_again(vm_factory):
    vm = vm_factory(linux_args("--cont"))
    booted(vm)
    mark = vm.mark()
    vm.qmp("system_reset")
    ev = vm.event("RESET", start=mark)
    assert ev["guest"] is False and ev["reason"] == "host-qmp-system-reset"
    vm.wait_console("chcp-guest: init", count=2)
    vm.wait_console(READY, count=2)
    assert vm.status() == "running"


def test_power_button_guest_powers_off_and_qemu_stays(vm_factory):
    vm = vm_factory(linux_args("--cont"))
    booted(vm)
    mark = vm.mark()
    vm.qmp("system_powerdown")
    vm.event("POWERDOWN", start=mark)
    vm.wait_console("chcp-guest: power-button")
    ev = vm.event("SHUTDOWN", start=mark, timeout=60)
    assert ev["guest"] is True and ev["reason"] == "guest-shutdown"
    vm.event("STOP", start=mark)
    # -no-shutdown: the process stays, the VM reads "shutdown"
    st = vm.qmp("query-status")
    assert st == {"status": "shutdown", "singlestep": False, "running": False}
    assert not any("exit" in m for m in vm.msgs)
    # quit ends it cleanly
    mark = vm.mark()
    r = vm.qmp("quit", ok=False)
    assert "error" not in r or r["error"]["code"] == "unavailable"
    ev = vm.event("SHUTDOWN", start=mark)
    assert ev["guest"] is False and ev["reason"] == "host-qmp-quit"
    ex = vm.exited()
    assert ex["status"] == 0 and ex["signal"] == 0


def test_guest_panic_is_reported(vm_factory, tmp_path):
    seed = make_seed(tmp_path / "seed.iso", {
        "meta-data": "instance-id: panic-1\n",
        "user-data": "#!/bin/sh\necho 'chcp-guest: user-data panics'\necho c > /proc/sysrq-trigger\n",
    }, kind="iso")
    vm = vm_factory(linux_args("--cont", "--disk", seed + ":ro"))
    vm.ready()
    vm.wait_console("chcp-guest: instance-id=panic-1")
    ev = vm.event("GUEST_PANICKED", timeout=90)
    assert ev["data"]["action"] == "pause"
    assert vm.status() == "guest-panicked"


def test_qemu_killed_is_seen(vm_factory):
    vm = vm_factory(linux_args())
    vm.ready()
    assert vm.request({"signal": 9})["return"]["sent"] is True
    ex = vm.exited()
    assert ex["signal"] == 9 and ex["reason"].startswith("killed by signal 9")
    closed = vm.wait(lambda m: "closed" in m)["closed"]
    assert closed["code"] == "unavailable"
    # commands after the end fail at once, with the reason
    r = vm.qmp("query-status", ok=False)
    assert r["error"]["code"] == "unavailable"


def test_start_failure_carries_qemu_stderr(vm_factory, tmp_path):
    vm = vm_factory(["--accel", "tcg", "--kernel", str(tmp_path / "no-such-kernel"), "--cont"])
    ex = vm.exited()
    assert ex["status"] == 1
    assert "kernel" in ex["stderr"].lower() or "linux" in ex["stderr"].lower(), ex


def test_q35_with_bzimage(vm_factory):
    vm = vm_factory(linux_args("--cont", machine="q35"))
    booted(vm)
    mark = vm.mark()
    vm.qmp("system_powerdown")
    ev = vm.event("SHUTDOWN", start=mark, timeout=60)
    assert ev["guest"] is True and ev["reason"] == "guest-shutdown"
    assert vm.status() == "shutdown"
