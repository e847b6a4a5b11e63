"""chclient.py - test helpers for the Cloud Hypervisor stand-in.

A raw HTTP/1.1 client over AF_UNIX (so tests see the exact bytes micro_http
sends and can attach SCM_RIGHTS fds), an event-monitor reader that splits on
blank lines like CH's own tests, and a StandIn process wrapper that always
cleans up (kill, wait, socket check).
"""

import json
import os
import signal
import socket
import subprocess
import time

BIN = os.environ.get("CH_STANDIN", "")


class Response:
    def __init__(self, raw_head, status_line, headers, body):
        self.raw_head = raw_head
        self.status_line = status_line
        self.status = int(status_line.split(b" ")[1])
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


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

    def request(self, method, path, body=None, fds=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        req = f"{method} /api/v1/{path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n"
        for k, v in (headers or {}).items():
            req += f"{k}: {v}\r\n"
        if body is not None:
            req += f"Content-Length: {len(body)}\r\n"
        req = req.encode() + b"\r\n" + (body or b"")
        self.send_raw(req, fds)
        return self.read_response()


def read_events(path):
    """Events as dicts; each one is pretty JSON followed by a blank line."""
    with open(path, "rb") as f:
        data = f.read().decode()
    return [json.loads(chunk) for chunk in data.split("\n\n") if chunk.strip()]


def names(events):
    return [f"{e['source']}/{e['event']}" for e in events]


class StandIn:
    """A stand-in process in its own directory. Always use as a context manager."""

    def __init__(self, tmp_path, args=None, faults=None, no_shutdown=False, events=True,
                 log=True, api="path", pass_fds=(), wait=True, extra=None):
        self.dir = str(tmp_path)
        self.sock_path = os.path.join(self.dir, "api.sock")
        self.ev_path = os.path.join(self.dir, "events")
        self.log_path = os.path.join(self.dir, "ch.log")
        if faults is not None:
            with open(os.path.join(self.dir, "standin-faults"), "w") as f:
                f.write(faults)
        argv = [BIN]
        if args is not None:
            argv += args
        else:
            if api == "path":
                argv += ["--api-socket", f"path={self.sock_path}"]
            if events:
                argv += ["--event-monitor", f"path={self.ev_path}"]
            if log:
                argv += ["--log-file", self.log_path, "-vv"]
            if no_shutdown:
                argv += ["--no-shutdown"]
        argv += extra or []
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=pass_fds, env={}, cwd=self.dir)
        self.conns = []
        if wait and api == "path" and args is None:
            try:
                self.wait_socket()
            except BaseException:
                self.__exit__(None, None, None)  # never leave the process behind
                raise

    def wait_socket(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.sock_path):
                try:
                    c = Conn(self.sock_path)
                    c.close()
                    return
                except OSError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"stand-in exited {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode()}")
            time.sleep(0.005)
        raise TimeoutError("API socket did not appear")

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

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def get(self, path):
        return self.call("GET", path)

    def events(self):
        return read_events(self.ev_path)

    def wait_event(self, name, timeout=3.0, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.ev_path) and names(self.events()).count(name) >= count:
                return self.events()
            time.sleep(0.01)
        raise AssertionError(f"no {name} event: {names(self.events())}")

    def wait_exit(self, timeout=5.0):
        return self.proc.wait(timeout)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

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


def minimal_config(tmp_path, cmdline="console=hvc0", **extra):
    kernel = os.path.join(str(tmp_path), "vmlinux")
    if not os.path.exists(kernel):
        with open(kernel, "wb") as f:
            f.write(b"\x7fELF not really")
    cfg = {"cpus": {"boot_vcpus": 1, "max_vcpus": 1}, "memory": {"size": 1 << 28},
           "payload": {"kernel": kernel, "cmdline": cmdline},
           "serial": {"mode": "Null"}, "console": {"mode": "Off"}}
    cfg.update(extra)
    return cfg


def run(args, timeout=15, cwd=None):
    """Run the stand-in to completion (clean environment, like chcp does)."""
    return subprocess.run([BIN] + args, capture_output=True, timeout=timeout, env={}, cwd=cwd)


def chain(r):
    """The error chain of a CH error response (a JSON array of strings)."""
    body = r.json()
    assert isinstance(body, list) and all(isinstance(s, str) for s in body), body
    return body


def booted(si, tmp_path, **cfg):
    assert si.put("vm.create", minimal_config(tmp_path, **cfg)).status == 204
    r = si.put("vm.boot")
    assert r.status == 204, r
    return si
