"""Stand-in tests: command line, start-up errors and exit codes, signals, the
logger and metrics targets, --config-file and --no-api."""

import json
import os
import signal
import stat
import time

import pytest

from fcclient import FC, make_disk, make_kernel, run


def test_version_and_help():
    r = run(["--version"])
    assert r.returncode == 0 and r.stdout == b"Firecracker v1.17.0-dev\n\n"
    r = run(["--bogus", "--version"])  # --version wins before the other arguments are parsed
    assert r.returncode == 0 and r.stdout.startswith(b"Firecracker v")
    r = run(["-h"])
    assert r.returncode == 0
    out = r.stdout.decode()
    assert out.startswith("Firecracker v1.17.0-dev\n\noptional arguments:\n")
    assert "--api-sock <api-sock>" in out and '[default: "/run/firecracker.socket"]' in out
    r = run(["--snapshot-version"])
    assert r.returncode == 0 and r.stdout == b"v11.0.0\n"


@pytest.mark.parametrize("argv,debug,display", [
    (["--bogus"], 'UnexpectedArgument("bogus")',
     "Found argument 'bogus' which wasn't expected, or isn't valid in this context."),
    (["bogus"], 'UnexpectedArgument("bogus")', "Found argument 'bogus'"),
    (["--api-sock=/x"], 'UnexpectedArgument("api-sock=/x")', "'api-sock=/x'"),
    (["--id", "a", "--id", "b"], 'DuplicateArgument("id")',
     "The argument 'id' was provided more than once."),
    (["--api-sock"], 'MissingValue("api-sock")',
     "The argument 'api-sock' requires a value, but none was supplied."),
    (["--log-path", "--level", "Info"], 'MissingValue("log-path")', "'log-path' requires a value"),
    (["--no-api"], 'MissingArgument("config-file")',
     "Argument 'config-file' required, but not found."),
    (["--no-seccomp", "--seccomp-filter", "/x"],
     'ForbiddenArgument("no-seccomp", "seccomp-filter")',
     "Argument 'seccomp-filter' cannot be used together with argument 'no-seccomp'."),
])
def test_argument_errors_exit_153(argv, debug, display):
    r = run(argv)
    assert r.returncode == 153, r
    assert r.stderr.decode() == f"Error: ParseArguments({debug})\n"
    out = r.stdout.decode()  # the logger writes to stdout until configured
    assert "[anonymous-instance:main] Arguments parsing error: " in out and display in out
    assert "For more information try --help." in out
    assert out.rstrip().endswith("Firecracker exiting with error. exit_code=153")


def test_arguments_after_double_dash_are_ignored(tmp_path):
    with FC(tmp_path, extra=["--", "--bogus", "x"]) as fc:
        assert fc.state() == "Not started"


def test_bad_level_exits_152(tmp_path):
    r = run(["--level", "verbose", "--api-sock", str(tmp_path / "s")])
    assert r.returncode == 152
    assert r.stderr.decode() == 'Error: InvalidLogLevel(LevelFilterFromStrError("verbose"))\n'
    assert not (tmp_path / "s").exists()
    for lvl in ("warning", "WARN", "off", "Trace"):  # case-insensitive, "warning" accepted
        r = run(["--level", lvl, "--version"])
        assert r.returncode == 0


@pytest.mark.parametrize("vm_id,why", [
    ("a_b", "InvalidChar('_', 1)"), ("", "InvalidLen(0, 1, 64)"), ("x" * 65, "InvalidLen(65, 1, 64)")])
def test_invalid_id_panics(tmp_path, vm_id, why):
    r = run(["--id", vm_id, "--api-sock", str(tmp_path / "s")])
    assert r.returncode == -signal.SIGABRT  # Rust panic = "abort"
    assert f"Firecracker panicked at src/firecracker/src/main.rs" in r.stdout.decode()
    assert f"Invalid instance ID: {why}" in r.stdout.decode()


def test_valid_ids(tmp_path):
    with FC(tmp_path, vm_id="A-1-z" * 12 + "abcd") as fc:  # 64 characters, hyphens allowed
        assert fc.get("/").json()["id"] == "A-1-z" * 12 + "abcd"


def test_socket_path_in_use_or_unbindable(tmp_path):
    sock = tmp_path / "api.sock"
    sock.write_text("stale")  # Firecracker never unlinks: a leftover path fails the start
    r = run(["--api-sock", str(sock)])
    assert r.returncode == 1
    assert r.stderr.decode() == f'Error: RunWithApi(FailedToBindSocket("{sock}"))\n'
    assert f"Failed to open the API socket at: {sock}. Check that it is not already used." \
        in r.stdout.decode()
    r = run(["--api-sock", str(tmp_path / "missing" / "api.sock")])
    assert r.returncode == 1
    assert r.stderr.decode().startswith(
        "Error: RunWithApi(FailedToBindAndRunHttpServer(IOError(Os { code: 2, kind: NotFound")


def test_socket_is_left_behind_at_every_exit(tmp_path):
    with FC(tmp_path) as fc:
        fc.start()
        fc.booted()
        assert fc.action("SendCtrlAltDel").status == 204
        assert fc.wait_exit() == 0
        assert os.path.exists(fc.sock_path)  # a restart needs the caller to unlink it
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b") as fc:
        fc.signal(signal.SIGTERM)  # not handled by Firecracker: the default action
        assert fc.wait_exit() == -signal.SIGTERM
        assert os.path.exists(fc.sock_path)


@pytest.mark.parametrize("sig,code", [(signal.SIGHUP, 156), (signal.SIGBUS, 149),
                                      (signal.SIGSEGV, 150), (signal.SIGILL, 157),
                                      (signal.SIGSYS, 148), (signal.SIGXFSZ, 151),
                                      (signal.SIGXCPU, 154)])
def test_fatal_signals_exit_with_fc_codes(tmp_path, sig, code):
    metrics = tmp_path / "metrics.json"
    with FC(tmp_path, extra=["--metrics-path", str(metrics)]) as fc:
        fc.start()
        fc.signal(sig)
        assert fc.wait_exit() == code
        assert f"Shutting down VM after intercepting signal {int(sig)}, code 0." in fc.log()
        assert metrics.read_text().count("\n") == 1  # written by the handler


def test_sigpipe_is_survived(tmp_path):
    with FC(tmp_path) as fc:
        fc.signal(signal.SIGPIPE)
        assert fc.alive(0.05) and fc.state() == "Not started"


def test_logger_file_is_overwritten_not_truncated(tmp_path):
    log = tmp_path / "fc.log"
    log.write_text("x" * 5000 + "TAIL\n")
    with FC(tmp_path) as fc:
        fc.get("/")
        text = log.read_text()
        assert "Running Firecracker v1.17.0-dev" in text.splitlines()[0]
        assert text.endswith("TAIL\n")  # no O_TRUNC, no O_APPEND: written from offset 0
        assert "[vm-1:fc_api] The API server received a Get request on \"/\"." in text


def test_logger_level_format_and_module_filter(tmp_path):
    args = ["--api-sock", str(tmp_path / "api.sock"), "--id", "lg", "--log-path",
            str(tmp_path / "fc.log"), "--level", "Warning", "--show-level", "--show-log-origin"]
    with FC(tmp_path, args=args) as fc:
        assert fc.get("/nope").status == 400  # logged at Error by the API server
        assert fc.get("/").status == 200       # logged at Info: filtered
        lines = fc.log().splitlines()
        err = [l for l in lines if "Invalid request method and/or path" in l]
        assert err and ":ERROR:" in err[0] and "routes.c:" in err[0]
        assert not any("received a Get request" in l for l in lines)
        r = fc.put("/logger", {"level": "Debug", "module": "vmm", "show_level": False})
        assert r.status == 204
        fc.get("/")  # api_server records no longer match the module filter
        assert not any("received a Get request" in l for l in fc.log().splitlines())


def test_logger_to_fifo_without_reader(tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    args = ["--api-sock", str(tmp_path / "api.sock"), "--log-path", str(fifo)]
    with FC(tmp_path, args=args) as fc:
        for _ in range(300):  # far beyond the pipe's capacity: lines are dropped, no block
            assert fc.get("/").status == 200
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        data = os.read(fd, 1 << 20)
        os.close(fd)
        assert b"Running Firecracker" in data and len(data) <= 65536


def test_logger_and_metrics_paths_that_do_not_open(tmp_path):
    r = run(["--api-sock", str(tmp_path / "s"), "--log-path", str(tmp_path / "no" / "log")])
    assert r.returncode == 1
    assert r.stderr.decode() == ('Error: LoggerInitialization(LoggerUpdateError(Os { code: 2, '
                                 'kind: NotFound, message: "No such file or directory" }))\n')
    r = run(["--api-sock", str(tmp_path / "s"), "--metrics-path", str(tmp_path / "no" / "m")])
    assert r.returncode == 1
    assert r.stderr.decode() == ('Error: MetricsInitialization(InitializationFailure("No such '
                                 'file or directory (os error 2)"))\n')
    r = run(["--api-sock", str(tmp_path / "s"), "--seccomp-filter", str(tmp_path / "none.bpf")])
    assert r.returncode == 1 and r.stderr.decode().startswith("Error: SeccompFilter(FileOpen(Os {")


@pytest.mark.parametrize("flag,value", [("--http-api-max-payload-size", "lots"),
                                        ("--mmds-size-limit", "-1")])
def test_numeric_arguments_that_do_not_parse_panic(tmp_path, flag, value):
    r = run(["--api-sock", str(tmp_path / "s"), flag, value])
    assert r.returncode == -signal.SIGABRT
    assert f"'{flag[2:]}' parameter expected to be of 'usize' type." in r.stdout.decode()


def test_config_file_boots_at_start(tmp_path):
    kernel = make_kernel(tmp_path)
    disk = make_disk(tmp_path)
    cfg = {"boot-source": {"kernel_image_path": kernel, "boot_args": "console=ttyS0 reboot=k"},
           "drives": [{"drive_id": "rootfs", "path_on_host": disk, "is_root_device": True,
                       "is_read_only": False}],
           "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
           "unknown-top-level-key": {"is": "ignored"}}
    (tmp_path / "vm.json").write_text(json.dumps(cfg))
    with FC(tmp_path, extra=["--config-file", str(tmp_path / "vm.json")]) as fc:
        assert fc.state() == "Running"
        assert "Command line: console=ttyS0 reboot=k pci=off root=/dev/vda rw" in \
            fc.wait_serial("Command line")
        full = fc.get("/vm/config").json()
        assert full["machine-config"]["vcpu_count"] == 2 and full["drives"][0]["drive_id"] == "rootfs"
        r = fc.put("/boot-source", {"kernel_image_path": kernel})
        assert r.status == 400
        assert r.fault() == "The requested operation is not supported after starting the microVM."
        assert "Successfully started microvm that was configured from one single json" in fc.log()


@pytest.mark.parametrize("content,needle", [
    ("{", "Invalid JSON: EOF while parsing an object"),
    ('{"drives": []}', "Invalid JSON: missing field `boot-source`"),
    ('{"boot-source": {"kernel_image_path": "/nonexistent"}}', "missing field `drives`"),
    ('{"boot-source": {"kernel_image_path": "/nonexistent"}, "drives": []}',
     "Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)"),
    ('{"boot-source": {"kernel_image_path": "KERNEL"}, "drives": [], '
     '"machine-config": {"vcpu_count": 0, "mem_size_mib": 128}}',
     "VM config error: The number of vCPUs must be greater than 0"),
])
def test_config_file_errors_exit_1(tmp_path, content, needle):
    (tmp_path / "vm.json").write_text(content.replace("KERNEL", make_kernel(tmp_path)))
    r = run(["--api-sock", str(tmp_path / "api.sock"), "--config-file", str(tmp_path / "vm.json")])
    assert r.returncode == 1, r
    assert r.stderr.decode().startswith("Error: RunWithApi(BuildFromJson(")
    assert needle in r.stdout.decode()  # the logger (stdout by default) has the Display text


def test_unreadable_config_file_panics(tmp_path):
    r = run(["--api-sock", str(tmp_path / "api.sock"), "--config-file", str(tmp_path / "none")])
    assert r.returncode == -signal.SIGABRT
    assert "Unable to open or read from the configuration file" in r.stdout.decode()


def test_no_api_runs_until_the_guest_resets(tmp_path):
    kernel = make_kernel(tmp_path)
    cfg = {"boot-source": {"kernel_image_path": kernel,
                           "boot_args": "console=ttyS0 reboot=k standin.reboot_after_ms=100"},
           "drives": []}
    (tmp_path / "vm.json").write_text(json.dumps(cfg))
    args = ["--no-api", "--config-file", str(tmp_path / "vm.json"), "--api-sock",
            str(tmp_path / "api.sock"), "--log-path", str(tmp_path / "fc.log")]
    with FC(tmp_path, args=args) as fc:
        assert fc.wait_exit() == 0
        assert not os.path.exists(fc.sock_path)
        assert "reboot: Restarting system" in fc.serial()
    (tmp_path / "vm.json").write_text(json.dumps({"drives": []}))
    r = run(args)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("Error: RunWithoutApiError(BuildMicroVMFromJson(")


def test_boot_timer_logs_guest_boot_time(tmp_path):
    with FC(tmp_path, extra=["--boot-timer"]) as fc:
        fc.start()
        fc.booted()
        fc.wait_log("Guest-boot-time = ")
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b") as fc:
        fc.start()
        fc.booted()
        assert "Guest-boot-time" not in fc.log()


def test_metrics_path_flush_and_exit_write(tmp_path):
    metrics = tmp_path / "metrics.json"
    with FC(tmp_path, extra=["--metrics-path", str(metrics)]) as fc:
        assert fc.action("FlushMetrics").fault() == \
            "The requested operation is not supported before starting the microVM."
        fc.start()
        assert metrics.read_text() == ""  # nothing before the first flush (60 s period)
        fc.get("/")
        fc.get("/")
        assert fc.action("FlushMetrics").status == 204
        first = json.loads(metrics.read_text().splitlines()[0])
        assert list(first)[0] == "utc_timestamp_ms" and "id" not in first
        assert abs(first["utc_timestamp_ms"] / 1000 - time.time()) < 60
        assert first["get_api_requests"]["instance_info_count"] == 2
        assert first["put_api_requests"]["actions_count"] == 3  # FlushMetrics x2, InstanceStart
        assert first["put_api_requests"]["actions_fails"] == 0
        assert fc.action("FlushMetrics").status == 204
        second = json.loads(metrics.read_text().splitlines()[1])
        assert second["get_api_requests"]["instance_info_count"] == 0  # counters restart
        assert fc.put("/metrics", {"metrics_path": str(metrics)}).fault().startswith(
            "The requested operation is not supported after")
        fc.booted()
        assert fc.action("SendCtrlAltDel").status == 204
        assert fc.wait_exit() == 0
        assert len(metrics.read_text().splitlines()) == 3  # the Vmm writes once more at exit
        assert json.loads(metrics.read_text().splitlines()[2])["i8042"]["reset_count"] == 1


def test_faults_file_start_faults(tmp_path):
    (tmp_path / "standin-faults").write_text("# comment\nexit_at_start=7\nexit_message=boom\n")
    r = run(["--api-sock", str(tmp_path / "api.sock")])
    assert r.returncode == 7 and r.stderr == b"boom\n" and not (tmp_path / "api.sock").exists()
    (tmp_path / "standin-faults").write_text("standin.start_delay_ms=300\n")
    t0 = time.monotonic()
    with FC(tmp_path) as fc:
        assert time.monotonic() - t0 >= 0.3
        assert fc.state() == "Not started"
    os.unlink(tmp_path / "api.sock")
    (tmp_path / "standin-faults").write_text("crash_on=start\n")
    r = run(["--api-sock", str(tmp_path / "api.sock")])
    assert r.returncode == -signal.SIGABRT and not (tmp_path / "api.sock").exists()


def test_api_socket_permissions_follow_the_umask(tmp_path):
    with FC(tmp_path) as fc:
        mode = stat.S_IMODE(os.stat(fc.sock_path).st_mode)
        assert mode & 0o700 == 0o700  # Firecracker sets no umask of its own
