"""GET /health on every listener and HTTP version, and what else it answers."""

import http.client
import socket
import subprocess

import pytest


def test_health_tcp(daemon):
    status, headers, body = daemon.http("GET", "/health")
    assert status == 200
    assert body == b"ok"
    assert headers["content-type"].startswith("text/plain")


def test_health_query_string_ignored(daemon):
    status, _, body = daemon.http("GET", "/health?verbose=1")
    assert (status, body) == (200, b"ok")


def test_health_head(daemon):
    status, headers, body = daemon.http("HEAD", "/health")
    assert status == 200
    assert body == b""


def test_health_wrong_method(daemon):
    status, headers, _ = daemon.http("POST", "/health", body=b"x")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def test_health_unix_socket(daemon):
    conn = UnixHTTPConnection(daemon.unix_socket)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b"ok"
    finally:
        conn.close()


def test_health_h2c(daemon):
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-w", "\\n%{http_version} %{http_code}",
         daemon.base_url + "/health"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    assert out == "ok\n2 200"


def test_health_h2c_unix_socket(daemon):
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "--unix-socket", daemon.unix_socket,
         "-w", "\\n%{http_version} %{http_code}", "http://localhost/health"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    assert out == "ok\n2 200"


def test_health_keepalive_many(daemon):
    """One connection, many requests: answers keep coming in order."""
    conn = daemon.connection()
    try:
        for _ in range(50):
            conn.request("GET", "/health")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"ok")
    finally:
        conn.close()


def test_unknown_path_404(daemon):
    status, _, _ = daemon.http("GET", "/nope")
    assert status == 404
    status, _, _ = daemon.http("GET", "/health/extra")
    assert status == 404


def test_test_hooks_off_by_default(start_daemon):
    d = start_daemon()
    status, _, _ = d.http("GET", "/_test/sleep?ms=1")
    assert status == 404


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_listener(start_daemon):
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    d = start_daemon(env={"CHCP_ADDRESS": "::1"})
    assert d.startup["address"] == "::1"
    status, _, body = d.http("GET", "/health")
    assert (status, body) == (200, b"ok")
    # Not on IPv4.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", d.base_url + "/health"],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    assert out == "ok"
