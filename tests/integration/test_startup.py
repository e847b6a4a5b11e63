"""Start-up as an operator sees it: every failure to start is one plain line on
stderr (plus the JSON log record on stdout) with the documented exit code;
variables that look like chcp's but are not are warned about with the name they
are a likely typo of; systemd's readiness and watchdog protocol."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from harness import (assert_json_lines, assert_no_sanitizer_reports, base_env, chcp_bin,
                     run_binary, wait_for)


def base(tmp_path, **extra):
    env = {"CHCP_ADDRESS": "127.0.0.1", "CHCP_PORT": "0",
           "CHCP_STATE_DIR": str(tmp_path / "state")}
    env.update(extra)
    return env


def assert_start_failure(r, *needles):
    """Exit 1, one 'chcp-api: cannot start: ...' line on stderr naming the
    cause, the same as a JSON error record on stdout, nothing else."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert_no_sanitizer_reports(r.stdout + r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("chcp-api: cannot start: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, r.stderr)
    assert_json_lines(r.stdout)
    errors = [json.loads(l) for l in r.stdout.splitlines() if '"level":"error"' in l]
    assert [e["msg"] for e in errors] == [lines[0][len("chcp-api: "):]], r.stdout
    return lines[0]


def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_binary([], env=base(tmp_path, CHCP_PORT=str(port)))
    assert_start_failure(r, "127.0.0.1 port %d" % port, "Address already in use")


def test_address_not_on_this_host(tmp_path):
    # 192.0.2.0/24 is TEST-NET-1: a valid literal no host owns. Not loopback,
    # so without client authentication it needs the opt-in to get as far as
    # binding (tests/security/test_defaults.py checks the refusal itself).
    r = run_binary([], env=base(tmp_path, CHCP_ADDRESS="192.0.2.1",
                                CHCP_ALLOW_UNAUTHENTICATED="true"))
    assert_start_failure(r, "192.0.2.1", "Cannot assign requested address")


def test_state_dir_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_binary([], env=base(tmp_path, CHCP_STATE_DIR=str(f)))
    assert_start_failure(r, "CHCP_STATE_DIR", str(f), "not a directory")


def test_state_dir_below_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_binary([], env=base(tmp_path, CHCP_STATE_DIR=str(f / "state")))
    assert_start_failure(r, str(f))


def test_state_dir_not_writable(tmp_path):
    """Not writable for the daemon's user: checked before anything starts."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the daemon as another user")
    with tempfile.TemporaryDirectory(prefix="chcp-startup-") as top:
        os.chmod(top, 0o755)  # nobody may look, but not write
        state = os.path.join(top, "state")
        os.mkdir(state, 0o755)
        r = subprocess.run([chcp_bin()], env=base_env(base(tmp_path, CHCP_STATE_DIR=state)),
                           capture_output=True, text=True, timeout=20, user=65534, group=65534,
                           cwd="/")
    assert_start_failure(r, "CHCP_STATE_DIR", state, "Permission denied")


def test_image_dir_missing(tmp_path):
    missing = str(tmp_path / "images")
    r = run_binary([], env=base(tmp_path, CHCP_IMAGE_DIRS=missing))
    assert_start_failure(r, "CHCP_IMAGE_DIRS", missing, "No such file or directory")
    assert not (tmp_path / "state").exists()  # checked before the state dir is made


def test_image_dir_is_a_file(tmp_path):
    (tmp_path / "images").mkdir()
    f = tmp_path / "vmlinux"
    f.write_text("x")
    r = run_binary([], env=base(tmp_path, CHCP_IMAGE_DIRS="%s:%s" % (tmp_path / "images", f)))
    assert_start_failure(r, "CHCP_IMAGE_DIRS", str(f), "not a directory")


def test_unix_socket_directory_missing(tmp_path):
    sock = str(tmp_path / "run" / "api.sock")
    r = run_binary([], env=base(tmp_path, CHCP_UNIX_SOCKET=sock))
    assert_start_failure(r, "CHCP_UNIX_SOCKET", str(tmp_path / "run"))


@pytest.mark.parametrize("name,value,needle", [
    ("UNKEY_CHCP_OTEL_ENDPOINT", "ftp://collector:21", "only http:// and https://"),
    ("UNKEY_CHCP_OTEL_ENDPOINT", "http://collector:99999", "no valid host[:port]"),
    ("UNKEY_CHCP_OTEL_ENDPOINT", "http://user:secret@collector:4318", "no valid host[:port]"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318/v1 x", "not a URL"),
])
def test_bad_url_exits_2(tmp_path, name, value, needle):
    r = run_binary([], env=base(tmp_path, UNKEY_CHCP_OTEL_ENABLED="true", **{name: value}))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("chcp-api: invalid configuration: %s: " % name), r.stderr
    assert needle in r.stderr
    assert not (tmp_path / "state").exists()


def live_on_unix_socket(path):
    """/livez (not /health: without a VMM binary the daemon is live, not ready)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(2)
            c.connect(path)
            c.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start(tmp_path, env):
    """Start chcp-api with stdout and stderr apart; wait until /livez answers
    on its Unix socket (whatever the log level lets it say)."""
    sock = str(tmp_path / "api.sock")
    env = dict(env, CHCP_UNIX_SOCKET=sock)
    out = open(tmp_path / "stdout", "w")
    err = open(tmp_path / "stderr", "w")
    p = subprocess.Popen([chcp_bin()], env=base_env(env), stdin=subprocess.DEVNULL,
                         stdout=out, stderr=err)
    out.close()
    err.close()
    if not wait_for(lambda: p.poll() is not None or live_on_unix_socket(sock), 20) or \
            p.poll() is not None:
        p.kill()
        p.wait()
        raise AssertionError("did not start: %s %s" % ((tmp_path / "stdout").read_text(),
                                                       (tmp_path / "stderr").read_text()))
    return p


def stop(p, tmp_path):
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 0
    out, err = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    assert_no_sanitizer_reports(out + err)
    assert_json_lines(out)
    return out, err


def test_unknown_variables_warned_with_suggestion(tmp_path):
    env = base(tmp_path, CHCP_PROT="9000", CHCP_OTEL_ENABLED="true", chcp_log_level="debug",
               CHCP_WHATEVER_THIS_IS="1", OTHER_VARIABLE="ignored")
    p = start(tmp_path, env)
    out, err = stop(p, tmp_path)
    assert sorted(err.splitlines()) == sorted([
        "chcp-api: warning: unknown variable CHCP_PROT is ignored (did you mean CHCP_PORT?)",
        "chcp-api: warning: unknown variable CHCP_OTEL_ENABLED is ignored "
        "(did you mean UNKEY_CHCP_OTEL_ENABLED?)",
        "chcp-api: warning: unknown variable chcp_log_level is ignored (did you mean CHCP_LOG_LEVEL?)",
        "chcp-api: warning: unknown variable CHCP_WHATEVER_THIS_IS is ignored "
        "(chcp-api --help lists them)",
    ]), err
    warns = [json.loads(l)["msg"] for l in out.splitlines() if '"level":"warn"' in l]
    assert sum("unknown variable" in w for w in warns) == 4, out


def test_clean_start_says_nothing_on_stderr(tmp_path):
    p = start(tmp_path, base(tmp_path))
    out, err = stop(p, tmp_path)
    assert err == ""


def test_warnings_follow_the_log_level(tmp_path):
    p = start(tmp_path, base(tmp_path, CHCP_LOG_LEVEL="error", CHCP_PROT="1"))
    out, err = stop(p, tmp_path)
    assert err == ""
    assert "unknown variable" not in out


def test_watchdog_pings_from_the_loop(tmp_path):
    """WATCHDOG_USEC set (the unit's WatchdogSec=): READY=1 with a STATUS=,
    then WATCHDOG=1 again and again, and STOPPING=1 at SIGTERM."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        p = start(tmp_path, base(tmp_path, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000"))
        msgs = []
        while sum(m == b"WATCHDOG=1" for m in msgs) < 4:
            msgs.append(sock.recv(4096))
        ready = [m for m in msgs if m.startswith(b"READY=1")]
        assert len(ready) == 1, msgs
        assert b"\nSTATUS=serving on 127.0.0.1 port " in ready[0]
        out, err = stop(p, tmp_path)
        sock.settimeout(0.5)
        rest = []
        try:
            while True:
                rest.append(sock.recv(4096))
        except socket.timeout:
            pass
        assert b"STOPPING=1" in rest, rest
    finally:
        sock.close()


def test_watchdog_for_another_pid_is_ignored(tmp_path):
    """WATCHDOG_PID naming another process: not ours to feed."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        p = start(tmp_path, base(tmp_path, NOTIFY_SOCKET=path, WATCHDOG_USEC="100000",
                                 WATCHDOG_PID="1"))
        assert sock.recv(4096).startswith(b"READY=1")
        sock.settimeout(0.6)  # six intervals
        with pytest.raises(socket.timeout):
            m = sock.recv(4096)
            raise AssertionError("unexpected notification %r" % m)
        stop(p, tmp_path)
    finally:
        sock.close()
