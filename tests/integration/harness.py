"""harness.py - start and stop a real chcp-api process for end-to-end tests.

A Daemon is the binary named by $CHCP_BIN (default build/asan/chcp-api),
started with a temporary state directory and Unix socket, listening on
127.0.0.1 port 0 (the kernel picks a free port; the daemon's startup log line
says which). Its stdout and stderr go to a file so a chatty daemon can never
block on a full pipe, and so every test can check the output afterwards for
sanitizer reports. stop() sends SIGTERM and checks for a clean exit 0.

VMMs outlive a stopped daemon by design (docs/durability.md), so the harness
keeps track of them: a VMM runs in its VM's directory, which tells whose it
is (vmm_processes). stop() fails if the VMM of a deleted VM (its directory is
gone) still runs: DeleteVm must answer only once the VMM is gone. cleanup()
ends the VMMs of VMs the test left behind, and leftover_vmms() lists what no
cleanup ended, for a session-end check.
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import http.client

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
INTEGRATION_DIR = os.path.dirname(os.path.abspath(__file__))
NODE_BIN = os.path.join(INTEGRATION_DIR, "node_modules", ".bin")

# Anything a sanitizer prints when it finds a bug.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "UndefinedBehaviorSanitizer",
    "ThreadSanitizer",
)

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


def standin_bin():
    """The Cloud Hypervisor stand-in (tests/ch-standin), built next to the daemon."""
    default = os.path.join(os.path.dirname(chcp_bin()), "ch-standin", "cloud-hypervisor")
    path = os.environ.get("CHCP_STANDIN", default)
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def chcp_bin():
    path = os.environ.get("CHCP_BIN", os.path.join(REPO, "build", "asan", "chcp-api"))
    if not os.path.isabs(path):
        path = os.path.join(REPO, path)
    return path


def base_env(extra=None):
    """A clean environment for the daemon: PATH and sanitizer options only,
    so variables from the developer's shell (a stray CHCP_PORT) never leak
    into a test."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.update(extra or {})
    return env


# The state directory of every Daemon made in this process (leftover_vmms).
_STATE_DIRS = []


def vmm_processes(state_dir):
    """{pid: VM directory} of the processes running in a VM directory under
    `state_dir`: chcp starts each VMM in its VM's directory. A directory
    already removed reads as "<path> (deleted)" and is returned that way."""
    prefix = os.path.join(os.path.realpath(state_dir), "vms") + "/"
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue  # gone, a zombie, or a kernel thread
        if cwd.startswith(prefix):
            found[int(pid)] = cwd
    return found


def end_processes(pids, timeout=10.0):
    """SIGKILL each of `pids` (by pid) and wait until none runs (a zombie
    waiting for its parent counts as ended)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def running(pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    deadline = time.monotonic() + timeout
    while any(running(p) for p in pids):
        assert time.monotonic() < deadline, "processes did not end after SIGKILL: %s" % pids
        time.sleep(0.02)


def leftover_vmms():
    """VMMs of every daemon this process started that still run."""
    found = {}
    for state_dir in _STATE_DIRS:
        found.update(vmm_processes(state_dir))
    return found


def assert_no_leftover_vmms():
    """For the end of a session: every daemon's cleanup() ended its VMMs, so
    one still running belongs to a daemon nobody cleaned up. It is ended,
    and the session fails. Only this session's daemons count, not every
    process running the same stand-in binary (an earlier run in the same
    checkout may have left some)."""
    left = leftover_vmms()
    end_processes(list(left))
    assert not left, "VMM processes left behind: %s" % left


def run_binary(args, env=None, timeout=20):
    """Run chcp-api to completion (for --help, --version, config errors)."""
    return subprocess.run(
        [chcp_bin()] + list(args),
        env=base_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_no_sanitizer_reports(text):
    for marker in SANITIZER_MARKERS:
        assert marker not in text, "sanitizer report in daemon output:\n" + text[-8000:]


def assert_json_lines(text):
    """Everything the daemon writes is JSON log lines with time/level/msg."""
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            raise AssertionError("daemon output line is not JSON: %r" % line[:300])
        assert {"time", "level", "msg"} <= rec.keys(), line
        assert rec["level"] in ("debug", "info", "warn", "error"), line


class Daemon:
    def __init__(self, env=None, args=None, unix_socket=True, vmm=False, binary=None):
        self.binary = binary or chcp_bin()
        self.tmp = tempfile.TemporaryDirectory(prefix="chcp-it-")
        self.state_dir = os.path.join(self.tmp.name, "state")
        self.image_dir = os.path.join(self.tmp.name, "images")
        self.kernel = os.path.join(self.image_dir, "vmlinux")
        self.unix_socket = os.path.join(self.tmp.name, "api.sock") if unix_socket else None
        self.log_path = os.path.join(self.tmp.name, "daemon.log")
        self.env = {
            "CHCP_ADDRESS": "127.0.0.1",
            "CHCP_PORT": "0",
            "CHCP_STATE_DIR": self.state_dir,
            "CHCP_LOG_LEVEL": "debug",
            # A usable VMM binary: without one the daemon is live but not
            # ready, and /health says 503.
            "CHCP_CH_BINARY": standin_bin(),
        }
        if self.unix_socket:
            self.env["CHCP_UNIX_SOCKET"] = self.unix_socket
        if vmm:
            # VMs for real: the stand-in as the VMM, one image directory
            # holding a (fake) kernel.
            os.mkdir(self.image_dir)
            with open(self.kernel, "wb") as f:
                f.write(b"\x7fELF fake kernel")
            self.env["CHCP_CH_BINARY"] = standin_bin()
            self.env["CHCP_IMAGE_DIRS"] = self.image_dir
        self.env.update(env or {})
        _STATE_DIRS.append(self.env["CHCP_STATE_DIR"])
        self.args = list(args or [])
        self.proc = None
        self.port = None
        self.startup = None

    # ---- lifecycle -------------------------------------------------------

    def start(self):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary] + self.args,
            env=base_env(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    "chcp-api exited with %d during start:\n%s" % (self.proc.returncode, self.output())
                )
            self.startup = self._find_startup_line()
            if self.startup and self._health_ok():
                return self
            time.sleep(0.02)
        self.kill()
        raise AssertionError("chcp-api did not become healthy:\n" + self.output())

    def _find_startup_line(self):
        for rec in self.log_records():
            if rec.get("msg", "").endswith(" listening") and "port" in rec:
                self.port = int(rec["port"])
                return rec
        return None

    def _health_ok(self):
        try:
            status, _, body = self.http("GET", "/livez", timeout=2)
            return status == 200 and body == b"ok"
        except OSError:
            return False

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_TIMEOUT_S):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        """SIGTERM, then require exit 0 and a clean log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("chcp-api did not exit after SIGTERM:\n" + self.output())
        out = self.output()
        assert_no_sanitizer_reports(out)
        assert rc == 0, "chcp-api exited %d after SIGTERM:\n%s" % (rc, out[-8000:])
        assert_json_lines(out)
        self.assert_no_vmm_of_deleted_vm()
        return rc

    def vmm_processes(self):
        """{pid: VM directory} of the VMMs of this daemon's state directory."""
        return vmm_processes(self.env["CHCP_STATE_DIR"])

    def assert_no_vmm_of_deleted_vm(self):
        """A VM directory is removed only after its VMM is gone (removal.c):
        a VMM still running for a VM directory that no longer exists outlived
        its DeleteVm. (A directory removed under the daemon and written back,
        as the state-directory tests do, exists again: not a deletion.)"""
        stray = {p: d for p, d in self.vmm_processes().items()
                 if not os.path.isdir(d[:-len(" (deleted)")] if d.endswith(" (deleted)") else d)}
        assert not stray, "VMMs of deleted VMs still run: %s\n%s" % (stray, self.output()[-8000:])

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cleanup(self):
        self.kill()
        # VMs the test left running: their VMMs outlived the daemon (by
        # design); the test is over, so they go too.
        end_processes(list(self.vmm_processes()))
        if getattr(self, "_log", None):
            self._log.close()
        self.tmp.cleanup()

    # ---- output ----------------------------------------------------------

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_records(self):
        """The JSON log lines (others, e.g. sanitizer output, are skipped)."""
        recs = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass
        return recs

    # ---- clients ---------------------------------------------------------

    @property
    def host(self):
        """Where to connect: the listen address, or loopback for 0.0.0.0."""
        addr = self.env.get("CHCP_ADDRESS", "127.0.0.1")
        return "127.0.0.1" if addr in ("0.0.0.0", "localhost") else addr

    @property
    def base_url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d" % (host, self.port)

    def connection(self, timeout=10):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def http(self, method, path, body=None, headers=None, timeout=10):
        """One HTTP/1.1 request on a new connection: (status, headers, body)."""
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def raw(self, data, timeout=5):
        """Send raw bytes on a new TCP connection; return all bytes read
        until the server closes or `timeout` passes."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(data)
            chunks = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)


def wait_for(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def connect_error(body):
    """Parse a Connect unary error body: (code, message)."""
    doc = json.loads(body)
    return doc.get("code"), doc.get("message", "")


STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


def raw_status(data):
    m = STATUS_LINE.match(data)
    return int(m.group(1)) if m else None
