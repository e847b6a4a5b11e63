"""hostile.py - what the hostile-client tests share: the daemon's memory as
/proc reports it, Connect calls over TCP or the Unix socket, raw sockets.

Tests import it next to harness (the conftest puts tests/integration on
sys.path): `from hostile import rss_kib, call, unix_call`.
"""

import http.client
import json
import socket
import time

API = "/cloudhypervisor.v1.VmService/"


def proc_status_kib(pid, field):
    """VmRSS, VmHWM, ... of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_kib(pid):
    return proc_status_kib(pid, "VmRSS")


def peak_rss_kib(pid):
    return proc_status_kib(pid, "VmHWM")


def open_fds(pid):
    import os

    return len(os.listdir("/proc/%d/fd" % pid))


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def _call(conn, method, msg, headers):
    body = json.dumps(msg).encode() if not isinstance(msg, (bytes, bytearray)) else bytes(msg)
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    try:
        conn.request("POST", API + method, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        doc = json.loads(data) if data[:1] == b"{" else None
        return resp.status, doc
    finally:
        conn.close()


def call(d, method, msg, headers=None, timeout=10):
    """One Connect JSON call over TCP on a new connection: (status, body as JSON)."""
    return _call(http.client.HTTPConnection(d.host, d.port, timeout=timeout), method, msg, headers)


def unix_call(d, method, msg, headers=None, timeout=10):
    """The same over the daemon's Unix socket."""
    return _call(UnixHTTPConnection(d.unix_socket, timeout=timeout), method, msg, headers)


def recv_all(s, timeout=5.0):
    """Everything the peer sends until it closes (or `timeout` passes)."""
    s.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
