"""Stand-in tests: events, guest-initiated transitions, process exit and faults."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from chclient import StandIn, booted, chain, minimal_config, names, run


# ---- events ------------------------------------------------------------------------------------


def test_event_format(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.wait_event("virtio-device/activated")
        raw = open(si.ev_path).read()
        chunks = [c for c in raw.split("\n\n") if c]
        assert raw.endswith("\n\n")
        first = chunks[0]
        assert first.startswith('{\n  "timestamp": {\n    "secs": 0,\n    "nanos": ')
        assert first.endswith('  "source": "vmm",\n  "event": "starting",\n  "properties": null\n}')
        evs = [json.loads(c) for c in chunks]
        assert all(list(e) == ["timestamp", "source", "event", "properties"] for e in evs)
        ts = [e["timestamp"]["secs"] * 10**9 + e["timestamp"]["nanos"] for e in evs]
        assert ts == sorted(ts)
        assert names(evs)[:3] == ["vmm/starting", "vm/booting", "vm/booted"]
        act = [e for e in evs if e["event"] == "activated"]
        assert [e["properties"] for e in act] == [{"id": "__rng"}]  # console Off, no disks


def test_pause_resume_events_and_refusals(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.put("vm.pause")
        si.put("vm.pause")
        si.put("vm.resume")
        si.put("vm.resume")
        ev = [n for n in names(si.events()) if n.startswith("vm/") and "boot" not in n]
        assert ev == ["vm/pausing", "vm/paused", "vm/pausing", "vm/resuming", "vm/resumed",
                      "vm/resuming"]


def test_boot_without_config_still_emits_booting(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.boot").status == 404
        assert si.put("vm.reboot").status == 404
        assert names(si.events()) == ["vmm/starting", "vm/booting", "vm/rebooting"]


def test_full_event_pipe_drops_events_instead_of_blocking(tmp_path):
    rfd, wfd = os.pipe()
    sock = str(tmp_path / "api.sock")
    with StandIn(tmp_path, args=["--api-socket", f"path={sock}", "--event-monitor",
                                 f"fd={wfd}"], pass_fds=[wfd]) as si:
        os.close(wfd)
        si.sock_path = sock
        si.wait_socket()
        booted(si, tmp_path)
        c = si.conn()
        t0 = time.monotonic()
        for _ in range(300):  # ~4 events of ~130 bytes each: far beyond a 64 KiB pipe
            assert c.request("PUT", "vm.pause").status == 204
            assert c.request("PUT", "vm.resume").status == 204
        assert time.monotonic() - t0 < 30  # never blocked on the unread pipe
        os.set_blocking(rfd, False)
        data = b""
        while True:
            try:
                chunk = os.read(rfd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        assert 0 < len(data) <= 65536 and data.count(b'"event"') < 1200
    os.close(rfd)


def test_event_delay_delivers_after_the_reply(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(
            tmp_path, cmdline="standin.event_delay_ms=1000")).status == 204
        assert si.put("vm.boot").status == 204
        assert "vm/booted" not in names(si.events())  # reply first, events later
        evs = si.wait_event("vm/booted")
        assert names(evs)[:3] == ["vmm/starting", "vm/booting", "vm/booted"]
        si.signal(signal.SIGTERM)  # queued events are flushed at exit
        assert si.wait_exit() == 0
        assert names(si.events())[-1] == "vmm/shutdown"


def test_guest_console_output(tmp_path):
    con = tmp_path / "console.log"
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="console=hvc0 quiet",
               console={"mode": "File", "file": str(con)})
        text = con.read_text()
        assert "Linux version" in text and "Command line: console=hvc0 quiet" in text
        si.signal(signal.SIGUSR1)
        assert si.wait_exit() == 0
        assert con.read_text().endswith("reboot: Power down\n")
    (tmp_path / "tty").mkdir()
    with StandIn(tmp_path / "tty") as si:
        booted(si, tmp_path, console={"mode": "Tty"})  # Tty: CH's own stdout
        si.signal(signal.SIGTERM)
        assert si.wait_exit() == 0
        assert b"Linux version" in si.proc.stdout.read()


def test_console_file_truncated_on_reboot_and_reboot_after_shutdown(tmp_path):
    con = tmp_path / "console.log"
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, console={"mode": "File", "file": str(con)})
        with open(con, "a") as f:
            f.write("MARKER\n")
        assert si.put("vm.reboot").status == 204  # pre_create_console_devices again
        assert "MARKER" not in con.read_text() and "Linux version" in con.read_text()
        assert si.put("vm.shutdown").status == 204
        with open(con, "a") as f:
            f.write("MARKER\n")
        assert "MARKER" in con.read_text()  # shutdown leaves the file alone
        assert si.put("vm.boot").status == 204
        assert "MARKER" not in con.read_text()


def test_serial_socket(tmp_path):
    path = str(tmp_path / "serial.sock")
    with StandIn(tmp_path, no_shutdown=True) as si:
        cfg = minimal_config(tmp_path, serial={"mode": "Socket", "socket": path})
        assert si.put("vm.create", cfg).status == 204
        assert os.path.exists(path)  # bound at vm.create
        cli = socket.socket(socket.AF_UNIX)
        cli.settimeout(2)
        cli.connect(path)
        time.sleep(0.05)
        assert si.put("vm.boot").status == 204
        data = b""
        while b"Run /init" not in data:
            data += cli.recv(4096)
        assert b"Linux version" in data
        cli.close()
        assert si.put("vm.shutdown").status == 204
        assert not os.path.exists(path)  # the SerialManager removes it
        assert si.put("vm.boot").status == 204
        assert os.path.exists(path)
        assert si.put("vm.delete").status == 204
        assert not os.path.exists(path)


def test_pty_console(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(tmp_path, serial={"mode": "Pty"})).status == 204
        path = si.get("vm.info").json()["config"]["serial"]["file"]
        assert path.startswith("/dev/pts/")  # CH writes the pty path into the config
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            assert si.put("vm.boot").status == 204
            data = b""
            deadline = time.monotonic() + 2
            while b"Run /init" not in data and time.monotonic() < deadline:
                try:
                    data += os.read(fd, 4096)
                except BlockingIOError:
                    time.sleep(0.01)
            assert b"Linux version" in data
        finally:
            os.close(fd)


def test_serial_socket_quirks(tmp_path):
    path = str(tmp_path / "serial.sock")
    with StandIn(tmp_path) as si:
        r = si.put("vm.create", minimal_config(tmp_path, console={"mode": "Socket",
                                                                  "socket": path}))
        assert r.status == 500 and chain(r)[-1] == "No socket option support for console device"
        assert si.put("vm.delete").status == 204
        cfg = minimal_config(tmp_path, serial={"mode": "Socket", "socket": path})
        assert si.put("vm.create", cfg).status == 204
        assert si.put("vm.delete").status == 204  # never booted: the socket file stays
        assert os.path.exists(path)
        r = si.put("vm.create", cfg)
        assert r.status == 500 and "Address already in use" in chain(r)[-1]


# ---- process lifetime ---------------------------------------------------------------------


def test_vmm_shutdown_events_and_exit(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        c = si.conn()
        r = c.request("PUT", "vmm.shutdown")
        assert r.status == 200 and r.body == b""
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]
        assert not os.path.exists(si.sock_path)


def test_power_button_powers_off_and_exits(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        assert si.put("vm.power-button").status == 204
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]
        assert not os.path.exists(si.sock_path)


def test_no_shutdown_keeps_the_vmm(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        booted(si, tmp_path)
        assert si.put("vm.power-button").status == 204
        si.wait_event("vm/shutdown")
        assert si.proc.poll() is None
        assert si.get("vm.info").json()["state"] == "Created"
        assert "vm/deleted" not in names(si.events())
        assert si.put("vm.boot").status == 204


def test_power_button_while_paused_waits_for_resume(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        booted(si, tmp_path)
        assert si.put("vm.pause").status == 204
        assert si.put("vm.power-button").status == 204
        time.sleep(0.2)
        assert "vm/shutdown" not in names(si.events())
        assert si.put("vm.resume").status == 204
        si.wait_event("vm/shutdown")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_sigint_exit_0(tmp_path, sig):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.signal(sig)
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]
        assert not os.path.exists(si.sock_path)


def test_sigterm_without_vm(tmp_path):
    with StandIn(tmp_path) as si:
        si.signal(signal.SIGTERM)
        assert si.wait_exit() == 0
        assert names(si.events()) == ["vmm/starting", "vmm/shutdown"]


def test_signal_guest_events(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        booted(si, tmp_path, pvpanic=True)
        si.signal(signal.SIGUSR2)
        si.wait_event("vm/rebooted")
        si.signal(signal.SIGRTMIN)
        si.wait_event("guest/panic")
        si.signal(signal.SIGUSR1)
        si.wait_event("vm/shutdown")
        assert si.proc.poll() is None
        si.signal(signal.SIGUSR1)  # no guest any more: ignored
        time.sleep(0.1)
        assert names(si.events()).count("vm/shutdown") == 1


def test_failed_guest_reboot_kills_the_vmm(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        os.unlink(minimal_config(tmp_path)["payload"]["kernel"])
        si.signal(signal.SIGUSR2)
        assert si.wait_exit() == 1
        err = si.proc.stderr.read().decode()
        assert err.startswith("Error: Cloud Hypervisor exited with the following chain of "
                              "errors:\n  0: VMM thread exited with error\n"
                              "  1: Error rebooting VM\n  2: Cannot open kernel file\n")
        assert "(os error 2)" in err
        assert names(si.events())[-1] == "vm/rebooting"
        assert os.path.exists(si.sock_path)  # not a clean exit: the socket stays


def test_panic_needs_pvpanic(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.signal(signal.SIGRTMIN)
        time.sleep(0.2)
        assert "guest/panic" not in names(si.events())
        assert "no pvpanic device" in si.log()


def test_sigusr1_exits_without_no_shutdown(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.signal(signal.SIGUSR1)
        assert si.wait_exit() == 0


# ---- faults ------------------------------------------------------------------------------------


def test_fault_poweroff_after(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="console=hvc0 standin.poweroff_after_ms=100")
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]


def test_fault_timers_stop_while_paused(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        booted(si, tmp_path, cmdline="standin.poweroff_after_ms=1000")
        assert si.put("vm.pause").status == 204
        time.sleep(1.2)
        assert "vm/shutdown" not in names(si.events())
        assert si.put("vm.resume").status == 204
        si.wait_event("vm/shutdown")


def test_fault_reboot_after(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.reboot_after_ms=50")
        si.wait_event("vm/rebooted", count=2)  # a guest that reboots every boot
        assert si.get("vm.info").json()["state"] == "Running"


def test_fault_panic_after(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.panic_after_ms=50", pvpanic=True)
        si.wait_event("guest/panic")


@pytest.mark.parametrize("no_shutdown", [False, True])
def test_fault_vcpu_error_exits_even_with_no_shutdown(tmp_path, no_shutdown):
    with StandIn(tmp_path, no_shutdown=no_shutdown) as si:
        booted(si, tmp_path, cmdline="standin.vcpu_error_after_ms=50")
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]
        assert not os.path.exists(si.sock_path)


def test_fault_crash_after(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.crash_after_ms=1000 standin.crash_signal=KILL")
        assert si.put("vm.pause").status == 204  # a VMM crash does not wait for the guest
        assert si.wait_exit() == -signal.SIGKILL
        assert names(si.events())[-1] == "vm/paused"


def test_call_racing_the_exit_gets_an_answer(tmp_path):
    """A request posted while the control loop exits is answered, not stuck."""
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.poweroff_after_ms=30")
        statuses = []
        deadline = time.monotonic() + 3
        while si.proc.poll() is None and time.monotonic() < deadline:
            try:
                statuses.append(si.get("vm.info").status)
            except (OSError, EOFError):
                break
        assert si.wait_exit(5) == 0
        assert all(s in (200, 500) for s in statuses)


def test_fault_ignore_power_button(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.ignore_power_button=1 standin.acpi_delay_ms=10")
        assert si.put("vm.power-button").status == 204
        time.sleep(0.2)
        assert si.proc.poll() is None
        assert si.get("vm.info").json()["state"] == "Running"


def test_fault_boot_delay_serialises_the_api(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(
            tmp_path, cmdline="standin.boot_delay_ms=400")).status == 204
        booter = si.conn()
        t0 = time.monotonic()
        booter.send_raw(b"PUT /api/v1/vm.boot HTTP/1.1\r\n\r\n")
        si.wait_event("vm/booting")  # the control loop is inside the boot now
        r = si.get("vmm.ping")  # stuck behind the boot
        waited = time.monotonic() - t0
        assert r.status == 200 and waited >= 0.39
        assert booter.read_response().status == 204
        ev = names(si.events())
        assert ev.index("vm/booted") > ev.index("vm/booting")


def test_fault_api_delay(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(
            tmp_path, cmdline="standin.api_delay_ms=600")).status == 204
        t0 = time.monotonic()
        assert si.get("vm.info").status == 200
        assert time.monotonic() - t0 >= 0.59
        assert si.put("vm.delete").status == 204  # directives go with the config
        t0 = time.monotonic()
        assert si.get("vmm.ping").status == 200
        assert time.monotonic() - t0 < 0.5


def test_fault_fail_on_and_delay_on(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.fail_on=pause|vm.power-button "
                                     "standin.delay_on=vm.resume:400,info:0")
        r = si.put("vm.pause")
        assert r.status == 500
        assert chain(r) == ["Error from API", "The VM could not be paused",
                            "standin: injected failure (fail_on)"]
        assert chain(si.put("vm.power-button"))[1] == "Error triggering power button"
        assert si.get("vm.info").json()["state"] == "Running"  # nothing happened
        assert "vm/pausing" not in names(si.events())
        t0 = time.monotonic()
        assert si.put("vm.resume").status == 500  # delayed, then CH's own refusal
        assert time.monotonic() - t0 >= 0.39


def test_faults_file_fail_on_create(tmp_path):
    with StandIn(tmp_path, faults="fail_on=vm.create\n") as si:
        r = si.put("vm.create", minimal_config(tmp_path))
        assert r.status == 500 and chain(r)[1] == "The VM could not be created"
        assert si.get("vm.info").status == 404


@pytest.mark.parametrize("crash_signal,expect", [(None, -signal.SIGABRT),
                                                 ("KILL", -signal.SIGKILL),
                                                 ("SEGV", -signal.SIGSEGV)])
def test_fault_crash_on_boot(tmp_path, crash_signal, expect):
    with StandIn(tmp_path) as si:
        cmd = "standin.crash_on=pause,boot"
        if crash_signal:
            cmd += f" standin.crash_signal={crash_signal}"
        assert si.put("vm.create", minimal_config(tmp_path, cmdline=cmd)).status == 204
        c = si.conn()
        c.send_raw(b"PUT /api/v1/vm.boot HTTP/1.1\r\n\r\n")
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()
        rc = si.wait_exit()
        assert rc == expect
        assert names(si.events())[-1] == "vm/booting"
        assert os.path.exists(si.sock_path)  # a crash leaves the socket behind


def test_fault_hang_on(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(tmp_path,
                                                  cmdline="standin.hang_on=info")).status == 204
        c = si.conn(timeout=0.3)
        with pytest.raises(socket.timeout):
            c.request("GET", "vm.info")
        si.signal(signal.SIGTERM)  # a wedged control loop handles no signal
        with pytest.raises(subprocess.TimeoutExpired):
            si.wait_exit(0.3)
        si.signal(signal.SIGKILL)
        assert si.wait_exit() == -signal.SIGKILL


@pytest.mark.parametrize("mode", ["1", "late"])
def test_fault_fail_boot(tmp_path, mode):
    with StandIn(tmp_path) as si:
        cmd = f"standin.fail_boot={mode} standin.fail_boot_times=1"
        assert si.put("vm.create", minimal_config(tmp_path, cmdline=cmd)).status == 204
        r = si.put("vm.boot")
        assert r.status == 500 and "injected boot failure" in chain(r)[-1]
        r = si.put("vm.boot")
        if mode == "late":  # Vm kept: CH needs a shutdown/delete before booting again
            assert r.status == 500 and chain(r)[-1] == "VM is already created"
            assert si.put("vm.shutdown").status == 204
            r = si.put("vm.boot")
        assert r.status == 204


def test_faults_file_no_kvm(tmp_path):
    with StandIn(tmp_path, faults="no_kvm=1\n", wait=False) as si:
        assert si.wait_exit() == 1
        err = si.proc.stderr.read().decode()
        assert err == ("Error: Cloud Hypervisor exited with the following chain of errors:\n"
                       "  0: Failed to open hypervisor interface (is hypervisor interface "
                       "available?)\n  1: Failed to create the hypervisor\n"
                       "  2: no supported hypervisor\n")
        assert not os.path.exists(si.sock_path)
        assert not os.path.exists(si.ev_path)


def test_faults_file_exit_at_start(tmp_path):
    faults = "# start fails\nexit_at_start=3\nexit_message=boom: something broke\n"
    with StandIn(tmp_path, faults=faults, wait=False) as si:
        assert si.wait_exit() == 3
        assert si.proc.stderr.read() == b"boom: something broke\n"
        assert not os.path.exists(si.sock_path)


def test_faults_file_start_delay_and_defaults(tmp_path):
    faults = "start_delay_ms=300\nstandin.api_delay_ms=100\n"
    t0 = time.monotonic()
    with StandIn(tmp_path, faults=faults) as si:
        assert time.monotonic() - t0 >= 0.29
        t1 = time.monotonic()
        assert si.get("vmm.ping").status == 200
        assert time.monotonic() - t1 >= 0.09


def test_faults_file_next_to_socket_without_log_file(tmp_path):
    (tmp_path / "standin-faults").write_text("no_kvm=1\n")
    r = run(["--api-socket", f"path={tmp_path}/api.sock"])
    assert r.returncode == 1 and b"no supported hypervisor" in r.stderr


def test_faults_hang_at_start(tmp_path):
    with StandIn(tmp_path, faults="hang_on=start\n", wait=False) as si:
        time.sleep(0.3)
        assert si.proc.poll() is None and not os.path.exists(si.sock_path)


@pytest.mark.parametrize("api,codes", [("v54", (400, 409, 404, 404)),
                                       ("v53", (500, 500, 404, 500)),
                                       ("v50", (500, 500, 500, 500))])
def test_status_code_versions(tmp_path, api, codes):
    with StandIn(tmp_path, faults=f"api={api}\n") as si:
        cfg = minimal_config(tmp_path)
        cfg.pop("payload")
        si.put("vm.create", cfg)
        validation = si.put("vm.boot").status
        si.put("vm.delete")
        si.put("vm.create", minimal_config(tmp_path, disks=[{"path": "/a", "id": "x"},
                                                            {"path": "/b", "id": "x"}]))
        conflict = si.put("vm.boot").status
        si.put("vm.delete")
        not_created = si.get("vm.info").status
        si.put("vm.create", minimal_config(tmp_path))
        no_device = si.put("vm.remove-device", {"id": "nope"}).status
        assert (validation, conflict, not_created, no_device) == codes
