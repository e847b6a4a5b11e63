"""Stand-in tests: the simulated guest (console, poweroff, reboot, panic,
Ctrl+Alt+Del through the i8042), process exit, fault injection, snapshots."""

import json
import os
import signal
import time

import pytest

from fcclient import FC, make_disk, make_kernel


def test_console_banner_and_boot_marker(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 reboot=k panic=1 quiet", mem_size_mib=256, vcpu_count=2)
        text = fc.booted()
        lines = text.splitlines()
        assert "Linux version" in lines[0] and lines[0].startswith("[    0.000")
        assert "Command line: console=ttyS0 reboot=k panic=1 quiet pci=off" in text
        assert "Memory: 262144K/262144K available" in text and "smp: Brought up 1 node, 2 CPUs" in text


def test_boot_marker_timing_follows_guest_boot_ms(tmp_path):
    with FC(tmp_path) as fc:
        t0 = time.monotonic()
        fc.start(boot_args="console=ttyS0 standin.guest_boot_ms=800")
        fc.wait_serial("Command line")
        assert "Run /sbin/init" not in fc.serial()
        fc.booted()
        assert time.monotonic() - t0 >= 0.8


def test_guest_poweroff_halts_but_the_process_stays(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 reboot=k standin.poweroff_after_ms=50")
        fc.wait_serial("reboot: Power down")
        assert fc.alive(0.2)
        assert fc.state() == "Running"  # Firecracker cannot tell (x86: no ACPI PM)
        for _ in range(4):  # the halted guest never reads the keys...
            assert fc.action("SendCtrlAltDel").status == 204
        r = fc.action("SendCtrlAltDel")  # ...so the 16-byte i8042 buffer fills up
        assert r.status == 400
        assert r.fault() == "Internal VMM error: I8042 error: i8042 internal buffer full."
        assert fc.patch("/vm", {"state": "Paused"}).status == 204
        assert fc.alive(0.05)


def test_guest_reboot_exits_0(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 reboot=k standin.reboot_after_ms=50")
        assert fc.wait_exit() == 0
        assert "reboot: Restarting system" in fc.serial()
        log = fc.log()
        assert "Vmm is stopping." in log and "Firecracker exiting successfully. exit_code=0" in log
        assert fc.stderr() == ""


def test_triple_fault_reboot_exits_1(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 reboot=t standin.reboot_after_ms=50")
        assert fc.wait_exit() == 1
        assert fc.stderr() == "Error: RunWithApi(MicroVMStoppedWithError(GenericError))\n"
        assert "Unexpected exit reason on vcpu run: Shutdown" in fc.log()


@pytest.mark.parametrize("panic,outcome", [("panic=-1", 0), ("panic=1", 0), ("", None),
                                           ("panic=0", None)])
def test_guest_panic(tmp_path, panic, outcome):
    with FC(tmp_path) as fc:
        t0 = time.monotonic()
        fc.start(boot_args=f"console=ttyS0 reboot=k {panic} standin.panic_after_ms=20")
        fc.wait_serial("Kernel panic - not syncing: standin")
        if outcome is None:  # no panic timeout: the guest hangs, Firecracker stays
            assert fc.alive(0.3) and fc.state() == "Running"
            return
        assert fc.wait_exit() == 0
        if panic == "panic=1":
            assert "Rebooting in 1 seconds.." in fc.serial() and time.monotonic() - t0 >= 1.0


def test_ctrl_alt_del_reboots_a_booted_guest(tmp_path):
    with FC(tmp_path) as fc:
        fc.start()
        fc.booted()
        assert fc.action("SendCtrlAltDel").status == 204
        assert fc.wait_exit() == 0
        assert "reboot: Restarting system" in fc.serial()


def test_ctrl_alt_del_before_the_keyboard_driver_is_lost(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 reboot=k standin.guest_boot_ms=1000")
        assert fc.action("SendCtrlAltDel").status == 204  # accepted, but flushed at driver init
        fc.booted()
        assert fc.alive(0.2)
        assert fc.action("SendCtrlAltDel").status == 204
        assert fc.wait_exit() == 0


def test_ctrl_alt_del_while_paused_acts_on_resume(tmp_path):
    with FC(tmp_path) as fc:
        fc.start()
        fc.booted()
        assert fc.patch("/vm", {"state": "Paused"}).status == 204
        assert fc.action("SendCtrlAltDel").status == 204
        assert fc.alive(0.2) and fc.state() == "Paused"
        assert fc.patch("/vm", {"state": "Resumed"}).status == 204
        assert fc.wait_exit() == 0


@pytest.mark.parametrize("directive", ["standin.no_kbd=1", "standin.ignore_power_button=1"])
def test_guests_that_do_not_act_on_ctrl_alt_del(tmp_path, directive):
    with FC(tmp_path) as fc:
        fc.start(boot_args=f"console=ttyS0 reboot=k {directive}")
        fc.booted()
        for _ in range(4):
            assert fc.action("SendCtrlAltDel").status == 204
        assert fc.alive(0.2)
        r = fc.action("SendCtrlAltDel")
        if directive.endswith("no_kbd=1"):  # nobody reads the buffer
            assert r.fault() == "Internal VMM error: I8042 error: i8042 internal buffer full."
        else:  # keys read and ignored
            assert r.status == 204


def test_pause_freezes_guest_timers(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 reboot=k standin.reboot_after_ms=800")
        assert fc.patch("/vm", {"state": "Paused"}).status == 204
        assert fc.alive(1.0)  # guest time stands still
        t0 = time.monotonic()
        assert fc.patch("/vm", {"state": "Resumed"}).status == 204
        assert fc.wait_exit() == 0
        assert time.monotonic() - t0 >= 0.1


def test_guest_signals(tmp_path):
    with FC(tmp_path) as fc:
        fc.signal(signal.SIGUSR1)  # pre-boot: no guest, nothing happens
        assert fc.alive(0.05)
        fc.start()
        fc.signal(signal.SIGRTMIN)
        fc.wait_serial("Kernel panic")
        assert fc.wait_exit(3) == 0  # panic=1 from the default test command line
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b") as fc:
        fc.start()
        fc.signal(signal.SIGUSR1)
        fc.wait_serial("reboot: Power down")
        fc.signal(signal.SIGUSR2)  # a halted guest does not reboot
        assert fc.alive(0.1)
    (tmp_path / "c").mkdir()
    with FC(tmp_path / "c") as fc:
        fc.start()
        fc.patch("/vm", {"state": "Paused"})
        fc.signal(signal.SIGUSR2)  # waits for the resume, like the frozen guest
        assert fc.alive(0.2)
        fc.patch("/vm", {"state": "Resumed"})
        assert fc.wait_exit() == 0


def test_vcpu_error_exits_1(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 standin.vcpu_error_after_ms=30")
        assert fc.wait_exit() == 1
        assert "Received KVM_EXIT_INTERNAL_ERROR signal" in fc.log()
        assert "MicroVMStoppedWithError(GenericError)" in fc.stderr()


@pytest.mark.parametrize("directives,status", [
    ("standin.crash_on=InstanceStart", -signal.SIGABRT),
    ("standin.crash_on=boot standin.crash_signal=SEGV", 150),
    ("standin.crash_on=vm.boot standin.crash_signal=KILL", -signal.SIGKILL),
])
def test_crash_on_instance_start(tmp_path, directives, status):
    with FC(tmp_path) as fc:
        fc.configure(boot_args=f"console=ttyS0 {directives}")
        with pytest.raises((EOFError, ConnectionError)):
            fc.action("InstanceStart")
        assert fc.wait_exit() == status


def test_crash_after_ms_and_crash_on_later_calls(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 standin.crash_after_ms=300")
        try:
            fc.patch("/vm", {"state": "Paused"})  # host time: a pause does not stop it
        except (EOFError, ConnectionError):
            pass  # a loaded machine let the crash come first
        assert fc.wait_exit(3) == -signal.SIGABRT
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b") as fc:
        fc.start(boot_args="console=ttyS0 standin.crash_on=pause standin.crash_signal=BUS")
        with pytest.raises((EOFError, ConnectionError)):
            fc.patch("/vm", {"state": "Paused"})
        assert fc.wait_exit() == 149


def test_hang_on_stops_the_api(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 standin.hang_on=info")
        c = fc.conn(timeout=0.5)
        with pytest.raises(TimeoutError):
            c.request("GET", "/")
        c2 = fc.conn(timeout=0.3)
        with pytest.raises(TimeoutError):  # serialised behind the hung call
            c2.request("GET", "/version")
        fc.signal(signal.SIGTERM)
        assert fc.wait_exit() == -signal.SIGTERM


def test_fail_on_and_fail_boot(tmp_path):
    with FC(tmp_path) as fc:
        fc.configure(boot_args="console=ttyS0 standin.fail_on=drives,SendCtrlAltDel "
                               "standin.fail_boot=1 standin.fail_boot_times=2")
        disk = make_disk(tmp_path)
        r = fc.put("/drives/rootfs", {"drive_id": "rootfs", "is_root_device": True,
                                      "path_on_host": disk})
        assert r.fault() == "Drive config error: standin: injected failure (fail_on)"
        assert fc.get("/vm/config").json()["drives"] == []
        for _ in range(2):
            r = fc.action("InstanceStart")
            assert r.fault() == ("Start microvm error: Internal error while starting microVM: "
                                 "standin: injected failure (fail_boot)")
            assert fc.state() == "Not started"
        assert fc.action("InstanceStart").status == 204  # the third attempt boots
        fc.booted()
        assert fc.action("SendCtrlAltDel").fault() == \
            "Internal VMM error: standin: injected failure (fail_on)"
        assert fc.alive(0.1)


def test_boot_source_directives_are_replaced_by_the_next_put(tmp_path):
    with FC(tmp_path) as fc:
        fc.configure(boot_args="console=ttyS0 standin.fail_boot=1")
        fc.configure(boot_args="console=ttyS0")
        assert fc.action("InstanceStart").status == 204


def test_delays(tmp_path):
    with FC(tmp_path) as fc:
        fc.configure(boot_args="console=ttyS0 standin.api_delay_ms=100 standin.delay_on=info:200")
        t0 = time.monotonic()
        fc.get("/version")
        assert time.monotonic() - t0 >= 0.1
        t0 = time.monotonic()
        fc.get("/")
        assert time.monotonic() - t0 >= 0.3


def test_no_kvm_fails_instance_start_not_the_process(tmp_path):
    with FC(tmp_path, faults="no_kvm=1\n") as fc:
        fc.configure()
        r = fc.action("InstanceStart")
        assert r.fault() == ("Start microvm error: Kvm error: Error creating KVM object: No such "
                             "file or directory (os error 2) Make sure the user launching the "
                             "firecracker process is configured on the /dev/kvm file's ACL.")
        assert fc.state() == "Not started" and fc.alive()


def test_request_racing_the_exit_never_hangs(tmp_path):
    with FC(tmp_path) as fc:
        fc.start(boot_args="console=ttyS0 reboot=k standin.reboot_after_ms=30")
        deadline = time.monotonic() + 5
        while fc.proc.poll() is None and time.monotonic() < deadline:
            try:
                fc.get("/")
            except (EOFError, ConnectionError, FileNotFoundError, TimeoutError):
                pass
        assert fc.wait_exit() == 0


def test_snapshot_create_and_load(tmp_path):
    disk = make_disk(tmp_path)
    snap, mem = str(tmp_path / "vm.snap"), str(tmp_path / "vm.mem")
    with FC(tmp_path) as fc:
        fc.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"})
        fc.start(drives=[{"drive_id": "rootfs", "is_root_device": True, "path_on_host": disk}],
                 mem_size_mib=64)
        r = fc.put("/snapshot/create", {"snapshot_path": snap, "mem_file_path": mem})
        assert r.fault() == ("Create snapshot error: Cannot save the microVM state: Operation not "
                             "allowed: save/restore unavailable while running")
        fc.patch("/vm", {"state": "Paused"})
        r = fc.put("/snapshot/create", {"snapshot_path": str(tmp_path / "no" / "s"),
                                        "mem_file_path": mem})
        assert r.fault() == ("Create snapshot error: Cannot perform open on the snapshot backing "
                             "file: No such file or directory (os error 2)")
        assert fc.put("/snapshot/create", {"snapshot_path": snap, "mem_file_path": mem}).status == 204
        assert os.path.getsize(mem) == 64 << 20
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b") as fc:
        fc.configure()
        r = fc.put("/snapshot/load", {"snapshot_path": snap, "mem_file_path": mem})
        assert r.fault() == ("Load snapshot error: Loading a microVM snapshot not allowed after "
                             "configuring boot-specific resources.")
        assert fc.alive()
    (tmp_path / "c").mkdir()
    with FC(tmp_path / "c") as fc:
        assert fc.put("/logger", {"level": "Info"}).status == 204  # allowed before a load
        r = fc.put("/snapshot/load", {
            "snapshot_path": snap, "mem_backend": {"backend_type": "File", "backend_path": mem},
            "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap9"}]})
        assert r.status == 204 and "deprecation" not in r.headers
        assert fc.state() == "Paused"
        full = fc.get("/vm/config").json()
        assert full["network-interfaces"][0]["host_dev_name"] == "tap9"
        assert full["machine-config"]["mem_size_mib"] == 64
        assert full["boot-source"]["kernel_image_path"] == ""  # not kept across a restore
        assert fc.patch("/vm", {"state": "Resumed"}).status == 204
        assert fc.action("SendCtrlAltDel").status == 204
        assert fc.wait_exit() == 0


@pytest.mark.parametrize("params,needle", [
    ({"snapshot_path": "NONE", "mem_file_path": "MEM"},
     "Failed to open snapshot file: No such file or directory (os error 2)"),
    ({"snapshot_path": "GARBAGE", "mem_file_path": "MEM"},
     "Failed to load snapshot state from file: Magic value does not match arch: "),
])
def test_failed_snapshot_load_is_fatal(tmp_path, params, needle):
    (tmp_path / "garbage").write_bytes(b"\x01\x02\x03\x04\x05\x06\x07\x08rest")
    (tmp_path / "mem").write_bytes(b"")
    subst = {"NONE": str(tmp_path / "none"), "GARBAGE": str(tmp_path / "garbage"),
             "MEM": str(tmp_path / "mem")}
    with FC(tmp_path) as fc:
        r = fc.put("/snapshot/load", {k: subst.get(v, v) for k, v in params.items()})
        assert r.status == 400 and r.fault().startswith(
            "Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state "
            "from file: ")
        assert needle in r.fault()
        assert fc.wait_exit() == 1  # the process is too dirty to go on
        assert fc.stderr() == "Error: RunWithApi(BuildMicroVmError(Restore))\n"
