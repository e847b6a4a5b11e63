"""The CHCP_* transport limits reach the transport: each one, set small,
changes what a client sees on the wire."""

import json
import socket
import struct
import time

from harness import raw_status


def test_max_header_bytes(start_daemon):
    d = start_daemon(env={"CHCP_MAX_HEADER_BYTES": "1024"})
    small = d.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 500 + b"\r\nConnection: close\r\n\r\n")
    assert raw_status(small) == 200
    big = d.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n")
    assert raw_status(big) == 431, big[:100]


def test_read_timeout(start_daemon):
    d = start_daemon(env={"CHCP_READ_TIMEOUT_MS": "500"})
    t0 = time.monotonic()
    resp = d.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n", timeout=10)  # headers never end
    elapsed = time.monotonic() - t0
    assert raw_status(resp) == 408, resp[:100]
    assert 0.4 < elapsed < 5.0, elapsed


def test_idle_timeout(start_daemon):
    d = start_daemon(env={"CHCP_IDLE_TIMEOUT_MS": "400"})
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        t0 = time.monotonic()
        assert s.recv(10) == b""  # closed by the daemon, not by the timeout above
        elapsed = time.monotonic() - t0
    assert 0.3 < elapsed < 5.0, elapsed


def served_connection(d, timeout=5.0):
    """A connection that got a /health answer. Retries while the daemon still
    counts connections that clients have just closed (the harness's own
    readiness probe, for one)."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                return s
        except ConnectionResetError:
            pass
        s.close()
        assert time.monotonic() < deadline, "no connection slot freed up"
        time.sleep(0.05)


def test_max_connections(start_daemon):
    """A full TCP pool makes room by closing the connection that has been idle
    longest; when every connection has a request in progress, a newcomer is
    accepted and closed at once, unanswered."""
    d = start_daemon(env={"CHCP_MAX_CONNECTIONS": "2", "CHCP_TEST_HOOKS": "1"})
    a = served_connection(d)
    time.sleep(0.05)
    b = served_connection(d)
    c = served_connection(d)  # a goes
    try:
        a.settimeout(5)
        try:
            assert a.recv(4096) == b""
        except ConnectionResetError:
            pass
        # Both held connections busy: a newcomer gets nothing.
        for s in (b, c):
            s.sendall(b"GET /_test/sleep?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as x:
            try:
                x.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert x.recv(4096) == b""
            except ConnectionResetError:
                pass
        # The busy ones finish their requests and still work.
        for s in (b, c):
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        a.close()
        b.close()
        c.close()


def test_h2_max_concurrent_streams(start_daemon):
    d = start_daemon(env={"CHCP_H2_MAX_CONCURRENT_STREAMS": "7"})
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        header = b""
        while len(header) < 9:
            header += s.recv(9 - len(header))
        length = int.from_bytes(header[:3], "big")
        assert header[3] == 0x04 and header[4] == 0  # SETTINGS, not an ACK
        payload = b""
        while len(payload) < length:
            payload += s.recv(length - len(payload))
    settings = dict(struct.unpack(">HI", payload[i:i + 6]) for i in range(0, length, 6))
    assert settings.get(0x3) == 7, settings  # SETTINGS_MAX_CONCURRENT_STREAMS


def test_max_body_bytes_startup_line(start_daemon):
    """The effective limits are the ones logged (defaults filled in)."""
    d = start_daemon()
    assert d.startup["max_body_bytes"] == str(4 * 1024 * 1024)
    assert d.startup["max_connections"] == "1024"
    assert d.startup["h2_max_concurrent_streams"] == "100"
    assert json.dumps(d.startup)  # the whole line is valid JSON
