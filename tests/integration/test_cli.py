"""chcp-api's command line and configuration errors: exit codes and messages."""

import os
import re
import socket
import subprocess

import pytest

from harness import REPO, assert_no_sanitizer_reports, run_binary


def test_version():
    r = run_binary(["--version"])
    assert r.returncode == 0, r.stderr
    version = open(os.path.join(REPO, "VERSION")).read().strip()
    pattern = r"chcp-api %s \(git ([0-9a-f]{4,40}|unknown)\)\n" % re.escape(version)
    assert re.fullmatch(pattern, r.stdout), r.stdout


def test_help_lists_settings():
    r = run_binary(["--help"])
    assert r.returncode == 0, r.stderr
    for name in ("--port", "CHCP_PORT", "--address", "--unix-socket", "--state-dir", "--ch-binary",
                 "--ch-endpoint", "--log-level", "CHCP_SHUTDOWN_TIMEOUT_MS",
                 "UNKEY_CHCP_OTEL_SAMPLING_RATE", "--version"):
        assert name in r.stdout
    assert_no_sanitizer_reports(r.stdout + r.stderr)


def test_help_ignores_broken_environment():
    r = run_binary(["-h"], env={"CHCP_PORT": "oops"})
    assert r.returncode == 0
    assert "Usage:" in r.stdout


BAD_ENV = [
    ("CHCP_PORT", "http"),
    ("CHCP_PORT", "65536"),
    ("CHCP_ADDRESS", "not-an-ip"),
    ("CHCP_UNIX_SOCKET", "relative/api.sock"),
    ("CHCP_BACKEND", "firecracker"),
    ("CHCP_CH_ENDPOINT", "tcp://127.0.0.1:1"),
    ("CHCP_CH_BINARY", "/nonexistent/cloud-hypervisor"),
    ("CHCP_STATE_DIR", "relative/state"),
    ("CHCP_IMAGE_DIRS", "/ok:relative"),
    ("CHCP_MAX_VCPUS", "0"),
    ("CHCP_MAX_MEMORY_MIB", "lots"),
    ("CHCP_MAX_CONCURRENT_STARTS", "-1"),
    ("CHCP_LOG_LEVEL", "chatty"),
    ("CHCP_MAX_BODY_BYTES", "0"),
    ("CHCP_MAX_HEADER_BYTES", "1k"),
    ("CHCP_IDLE_TIMEOUT_MS", "0"),
    ("CHCP_READ_TIMEOUT_MS", "1.5"),
    ("CHCP_MAX_CONNECTIONS", "0"),
    ("CHCP_H2_MAX_CONCURRENT_STREAMS", "0"),
    ("CHCP_SHUTDOWN_TIMEOUT_MS", "forever"),
    ("CHCP_TEST_HOOKS", "perhaps"),
    ("UNKEY_CHCP_OTEL_ENABLED", "sure"),
    ("UNKEY_CHCP_OTEL_SAMPLING_RATE", "1.5"),
    ("UNKEY_VMCP_OTEL_SAMPLING_RATE", "abc"),
    ("UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED", "2"),
    ("UNKEY_CHCP_OTEL_PROMETHEUS_PORT", "0"),
    ("CHCP_OTEL_BATCH_DELAY_MS", "0"),
    ("CHCP_OTEL_METRIC_INTERVAL_MS", "x"),
    ("CHCP_ORPHAN_POLICY", "adopt"),
]


@pytest.mark.parametrize("name,value", BAD_ENV, ids=["%s=%s" % c for c in BAD_ENV])
def test_bad_variable_exits_2(name, value, tmp_path):
    env = {"CHCP_STATE_DIR": str(tmp_path / "state"), "CHCP_PORT": "0", "CHCP_ADDRESS": "127.0.0.1"}
    env[name] = value
    r = run_binary([], env=env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert ("%s: " % name) in r.stderr, r.stderr
    assert_no_sanitizer_reports(r.stdout + r.stderr)
    # Nothing was started: the state directory was not even created.
    assert os.listdir(tmp_path) == []


BAD_FLAGS = [
    (["--port", "x"], "--port: "),
    (["--port=99999"], "--port: "),
    (["--log-level=loud"], "--log-level: "),
    (["--state-dir", "rel"], "--state-dir: "),
    (["--unix-socket=rel.sock"], "--unix-socket: "),
    (["--ch-endpoint", "/tmp/x.sock"], "--ch-endpoint: "),
    (["--ch-binary=/nonexistent/ch"], "--ch-binary: "),
    (["--address"], "--address: missing value"),
    (["--bogus"], "unknown flag '--bogus'"),
    (["serve"], "unexpected argument 'serve'"),
]


@pytest.mark.parametrize("args,message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_exits_2(args, message):
    r = run_binary(args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr
    assert_no_sanitizer_reports(r.stdout + r.stderr)


def test_flag_overrides_invalid_variable(start_daemon):
    # CHCP_PORT is invalid, but --port (given) wins; the fixture's
    # CHCP_PORT=0 is replaced by a bad value here.
    d = start_daemon(env={"CHCP_PORT": "bad"}, args=["--port", "0", "--log-level=info"])
    assert d.startup["port"] != "0"
    assert d.http("GET", "/health")[0] == 200


def test_startup_line_reports_config(start_daemon):
    d = start_daemon(env={"CHCP_MAX_BODY_BYTES": "12345", "CHCP_SHUTDOWN_TIMEOUT_MS": "777",
                          "CHCP_CH_ENDPOINT": "unix:///tmp/ch-not-used.sock"})
    s = d.startup
    assert s["level"] == "info"
    assert s["version"] == open(os.path.join(REPO, "VERSION")).read().strip()
    assert s["address"] == "127.0.0.1"
    assert s["unix_socket"] == d.unix_socket
    assert s["state_dir"] == d.state_dir
    assert s["max_body_bytes"] == "12345"
    assert s["shutdown_timeout_ms"] == "777"
    assert s["ch_mode"] == "attach"
    assert s["ch_endpoint"] == "unix:///tmp/ch-not-used.sock"
    assert os.path.isdir(d.state_dir)
    assert os.stat(d.state_dir).st_mode & 0o777 == 0o700


def test_port_in_use_exits_1(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_binary([], env={"CHCP_ADDRESS": "127.0.0.1", "CHCP_PORT": str(port),
                                "CHCP_STATE_DIR": str(tmp_path / "state")})
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert str(port) in r.stdout
    assert_no_sanitizer_reports(r.stdout + r.stderr)


def test_unusable_state_dir_exits_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run_binary([], env={"CHCP_ADDRESS": "127.0.0.1", "CHCP_PORT": "0",
                            "CHCP_STATE_DIR": str(blocker / "state")})
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert str(blocker) in r.stdout
    assert_no_sanitizer_reports(r.stdout + r.stderr)


def test_unix_socket_of_running_daemon_not_stolen(start_daemon, tmp_path):
    d = start_daemon()
    r = run_binary([], env={"CHCP_ADDRESS": "127.0.0.1", "CHCP_PORT": "0",
                            "CHCP_STATE_DIR": str(tmp_path / "state"),
                            "CHCP_UNIX_SOCKET": d.unix_socket})
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert d.unix_socket in r.stdout
    assert_no_sanitizer_reports(r.stdout + r.stderr)
    # The first daemon still answers on it.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(d.unix_socket)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.close()
