"""chcp.py - drive a real chcp-api (and its stand-in VMMs) for the
crash-consistency suite and the recovery benchmark.

Only loopback: the daemon listens on 127.0.0.1, VMMs on Unix sockets.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

SERVICE = "/cloudhypervisor.v1.VmService/"


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class Daemon:
    """One chcp-api process over a fixed state directory."""

    def __init__(self, binary, standin, state_dir, image_dir, log_path, env=None):
        self.binary = binary
        self.standin = standin
        self.state_dir = state_dir
        self.image_dir = image_dir
        self.log_path = log_path
        self.extra_env = dict(env or {})
        self.proc = None
        self.port = None
        self.conn = None

    def start(self, timeout=60.0):
        env = {
            "PATH": "/usr/bin:/bin",
            "CHCP_ADDRESS": "127.0.0.1",
            "CHCP_PORT": "0",
            "CHCP_STATE_DIR": self.state_dir,
            "CHCP_CH_BINARY": self.standin,
            "CHCP_IMAGE_DIRS": self.image_dir,
            "CHCP_LOG_LEVEL": "info",
            "CHCP_MAX_CONCURRENT_STARTS": "64",
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
        }
        env.update(self.extra_env)
        self._log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary], env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        fixed = int(env.get("CHCP_PORT", "0"))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("chcp-api exited with %d at start:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            if fixed:
                # A fixed port answers before the "listening" line (which
                # waits for recovery): reachable is enough.
                try:
                    socket.create_connection(("127.0.0.1", fixed), timeout=1).close()
                    self.port = fixed
                    break
                except OSError:
                    pass
            else:
                m = re.search(r'"port":\s*"?(\d+)', self.log_since_start())
                if m:
                    self.port = int(m.group(1))
                    break
            time.sleep(0.01)
        else:
            raise AssertionError("chcp-api did not start:\n" + self.log_tail())
        self.conn = None
        return self

    def log_since_start(self):
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def log_tail(self, n=6000):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-n:]

    def health(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", "/_/health")
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            c.close()

    def wait_recovered(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, body = self.health()
            if body.get("recovery", {}).get("complete"):
                return body
            time.sleep(0.005)
        raise AssertionError("recovery did not complete: %r\n%s" % (body, self.log_tail()))

    def call(self, method, req, timeout=30.0):
        data = json.dumps(req).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self.conn.request("POST", SERVICE + method, body=data,
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                body = r.read()
                break
            except (ConnectionError, http.client.HTTPException, socket.timeout):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        out = json.loads(body or b"{}")
        if r.status != 200:
            raise RpcError(out.get("code", "unknown"), out.get("message", ""))
        return out

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.conn:
            self.conn.close()
            self.conn = None

    def term(self, timeout=60.0):
        os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        if self.conn:
            self.conn.close()
            self.conn = None
        return rc

    def sanitizer_report(self):
        text = self.log_since_start()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in text:
                return text[text.index(marker) - 200:][:6000]
        return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- looking at the VMMs directly ------------------------------------------------

def proc_start_time(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[19])


def vmm_processes(vms_dir, exclude=()):
    """{pid: vm_id} of every process holding <vms_dir>/<id>/events.json open
    (but those in `exclude`: chcp-api itself follows the event files)."""
    vms_real = os.path.realpath(vms_dir)
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        fd_dir = "/proc/%s/fd" % name
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                t = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if t.startswith(vms_real + "/") and t.endswith("/events.json"):
                out[int(name)] = t[len(vms_real) + 1:-len("/events.json")]
                break
    return out


def vmm_info(sock_path, timeout=5.0):
    """GET vm.info from a VMM's API socket: (status, body)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(b"GET /api/v1/vm.info HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, json.loads(rest) if rest else None
    finally:
        s.close()
