"""fcclient.py - test helpers for the Firecracker stand-in.

A raw HTTP/1.1 client over AF_UNIX (so tests see the exact bytes micro_http
sends), and an FC process wrapper that runs the stand-in in its own
directory with a clean environment and always cleans up (kill, wait).
The daemon's own tests may reuse it, as they reuse the CH stand-in's chclient.
"""

import fcntl
import json
import os
import signal
import socket
import subprocess
import time

BIN = os.environ.get("FC_STANDIN", "")


def wait_listening(path, timeout=15.0, check=None):
    """Wait until the Unix socket at `path` accepts connections. The file
    appears at bind(), before listen(): connecting in between is refused
    (Firecracker binds and listens in two steps too), so a path that exists
    is not yet an API that answers. `check()` may raise to stop waiting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            try:
                Conn(path).close()
                return
            except OSError:
                pass
        if check:
            check()
        time.sleep(0.005)
    raise TimeoutError(f"{path}: nothing accepts connections after {timeout} s")


class Response:
    def __init__(self, raw_head, status_line, headers, body):
        self.raw_head = raw_head
        self.status_line = status_line
        self.status = int(status_line.split(b" ")[1])
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def fault(self):
        """The fault_message of a Firecracker error body (the only key)."""
        body = self.json()
        assert list(body) == ["fault_message"], body
        return body["fault_message"]

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


class Conn:
    """One keep-alive connection to the API socket."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send_raw(self, data, fds=None):
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            k, v = line.split(b":", 1)
            headers[k.decode().lower()] = v.strip().decode()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return Response(head + b"\r\n\r\n", lines[0], headers, body)

    def request(self, method, path, body=None, headers=None, fds=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        req = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
        for k, v in (headers or {}).items():
            req += f"{k}: {v}\r\n"
        if body is not None:
            req += f"Content-Length: {len(body)}\r\n"
        self.send_raw(req.encode() + b"\r\n" + (body or b""), fds)
        return self.read_response()


def make_kernel(directory):
    path = os.path.join(str(directory), "vmlinux")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(b"\x7fELF not really a kernel")
    return path


def make_disk(directory, name="rootfs.ext4", size=1 << 20):
    path = os.path.join(str(directory), name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


class FC:
    """A stand-in process in its own directory. Always use as a context manager.

    By default: --api-sock <dir>/api.sock --id <id> --log-path <dir>/fc.log
    --level Debug; the serial console is the process's stdout (a pipe)."""

    def __init__(self, tmp_path, args=None, extra=(), faults=None, vm_id="vm-1", log=True,
                 wait=True, pass_fds=(), stdin=subprocess.DEVNULL):
        self.dir = str(tmp_path)
        self.sock_path = os.path.join(self.dir, "api.sock")
        self.log_path = os.path.join(self.dir, "fc.log")
        if faults is not None:
            with open(os.path.join(self.dir, "standin-faults"), "w") as f:
                f.write(faults)
        if args is None:
            args = ["--api-sock", self.sock_path, "--id", vm_id]
            if log:
                args += ["--log-path", self.log_path, "--level", "Debug"]
        self.argv = [BIN] + list(args) + list(extra)
        self.proc = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env={}, cwd=self.dir,
                                     pass_fds=pass_fds)
        fcntl.fcntl(self.proc.stdout, fcntl.F_SETFL,
                    fcntl.fcntl(self.proc.stdout, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.out = b""
        self.conns = []
        if wait and "--no-api" not in self.argv:
            try:
                self.wait_socket()
            except BaseException:
                self.__exit__(None, None, None)  # never leave the process behind
                raise

    def wait_socket(self, timeout=15.0):
        def exited():
            if self.proc.poll() is not None:
                raise RuntimeError(f"stand-in exited {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode()}")
        wait_listening(self.sock_path, timeout, exited)

    def conn(self, timeout=5.0):
        c = Conn(self.sock_path, timeout)
        self.conns.append(c)
        return c

    def call(self, method, path, body=None, **kw):
        c = self.conn()
        try:
            return c.request(method, path, body, **kw)
        finally:
            c.close()

    def get(self, path):
        return self.call("GET", path)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def action(self, action_type):
        return self.put("/actions", {"action_type": action_type})

    def state(self):
        r = self.get("/")
        assert r.status == 200, r
        return r.json()["state"]

    def configure(self, boot_args="console=ttyS0 reboot=k panic=1", drives=(), **machine):
        kernel = make_kernel(self.dir)
        src = {"kernel_image_path": kernel}
        if boot_args is not None:
            src["boot_args"] = boot_args
        r = self.put("/boot-source", src)
        assert r.status == 204, r
        if machine:
            r = self.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, **machine})
            assert r.status == 204, r
        for d in drives:
            r = self.put(f"/drives/{d['drive_id']}", d)
            assert r.status == 204, r
        return self

    def start(self, boot_args="console=ttyS0 reboot=k panic=1", **kw):
        self.configure(boot_args, **kw)
        r = self.action("InstanceStart")
        assert r.status == 204, r
        return self

    def serial(self):
        """Everything the guest wrote to the console (the process's stdout) so far."""
        try:
            while True:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.out += chunk
        except BlockingIOError:
            pass
        return self.out.decode(errors="replace")

    def wait_serial(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.serial():
                return self.out.decode(errors="replace")
            time.sleep(0.005)
        raise AssertionError(f"{text!r} not on the console: {self.serial()!r}")

    def booted(self, timeout=5.0):
        """Wait for the boot marker (init runs, the keyboard driver is up)."""
        return self.wait_serial("Run /sbin/init as init process", timeout)

    def wait_exit(self, timeout=5.0):
        return self.proc.wait(timeout)

    def stderr(self):
        return self.proc.stderr.read().decode()

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_log(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.log_path) and text in self.log():
                return self.log()
            time.sleep(0.005)
        raise AssertionError(f"{text!r} not logged")

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def alive(self, settle=0.0):
        time.sleep(settle)
        return self.proc.poll() is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for c in self.conns:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def run(args, timeout=15, cwd=None):
    """Run the stand-in to completion (clean environment, like a control plane does)."""
    return subprocess.run([BIN] + list(args), capture_output=True, timeout=timeout, env={},
                          cwd=cwd)
