"""Connection fairness (issue 8, item 3): who gets in, and for how long.

The unfixed daemon let 1,024 HTTP/2 connections sending one PING every 20 s
hold every slot, the Unix socket's included, indefinitely: the idle timeout
was renewed by any byte, and a full pool refused newcomers. Now TCP and the
Unix socket are separate pools, a full pool evicts the connection that has
done least (idle longest, else stalled longest), one IP address holds at most
CHCP_MAX_CONNECTIONS_PER_PEER, deadlines are not renewed by control frames or
trickled bytes, and connections are drained at CHCP_MAX_CONNECTION_AGE_MS.
"""

import socket
import struct
import time

import h2.events

from h2client import API, H2, pump_all
from hostile import call, recv_all, unix_call


def peer(i, per_ip=200):
    """Hostile clients come from several loopback addresses (127.0.0.2...)."""
    return "127.0.0.%d" % (2 + i // per_ip)


def closed_by_server(s, timeout):
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (socket.timeout, BlockingIOError):
        return False
    except (ConnectionResetError, OSError):
        return True


def test_legit_clients_served_while_1024_connections_are_held(start_daemon):
    d = start_daemon()
    hostile = []
    for i in range(1024):
        hostile.append(H2((d.host, d.port), source=peer(i)))
    pump_all(hostile, 1.0)
    for c in hostile:
        c.ping()
    pump_all(hostile, 1.0)
    held = sum(not c.closed for c in hostile)
    assert held >= 1000, held
    for _ in range(3):
        t0 = time.monotonic()
        status, doc = call(d, "ListVms", {}, timeout=5)
        assert status == 200, doc
        status, doc = unix_call(d, "ListVms", {}, timeout=5)
        assert status == 200, doc
        assert time.monotonic() - t0 < 5
        for c in hostile:
            if not c.closed:
                c.ping()
        pump_all(hostile, 0.2)
    # Room was made by closing idle hostile connections, a few at most.
    assert sum(not (c.closed or c.goaway) for c in hostile) >= 1024 - 8
    for c in hostile:
        c.close()


def test_stalled_requests_make_room_too(start_daemon):
    """A full pool of connections each dribbling a request header: the one
    stalled longest makes room for a newcomer."""
    d = start_daemon(env={"CHCP_MAX_CONNECTIONS": "32"})
    slow = []
    try:
        for i in range(32):
            s = socket.create_connection((d.host, d.port), source_address=(peer(i, 8), 0))
            s.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
            slow.append(s)
            time.sleep(0.005)
        time.sleep(0.3)
        status, doc = call(d, "ListVms", {}, timeout=5)
        assert status == 200, doc
        assert closed_by_server(slow[0], 2.0)  # the first to start was evicted
    finally:
        for s in slow:
            s.close()


def test_per_peer_limit(start_daemon):
    d = start_daemon(env={"CHCP_MAX_CONNECTIONS_PER_PEER": "4", "CHCP_TEST_HOOKS": "1"})
    busy = []
    for _ in range(4):
        s = socket.create_connection((d.host, d.port), source_address=("127.0.0.2", 0))
        s.sendall(b"GET /_test/sleep?ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        busy.append(s)
    time.sleep(0.3)
    # A fifth from the same address finds all four busy: refused.
    extra = socket.create_connection((d.host, d.port), source_address=("127.0.0.2", 0))
    extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert recv_all(extra, 2.0) == b""
    extra.close()
    # Another address is not affected.
    other = socket.create_connection((d.host, d.port), source_address=("127.0.0.3", 0))
    other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert recv_all(other, 5.0).startswith(b"HTTP/1.1 200")
    other.close()
    for s in busy:
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    # Now idle: a newcomer from 127.0.0.2 displaces one of them.
    again = socket.create_connection((d.host, d.port), source_address=("127.0.0.2", 0))
    again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert recv_all(again, 5.0).startswith(b"HTTP/1.1 200")
    again.close()
    for s in busy:
        s.close()


def test_idle_timeout_is_not_renewed_by_control_frames(start_daemon):
    """PING, SETTINGS and WINDOW_UPDATE on HTTP/2, stray line ends on
    HTTP/1.1: none of them is a request, none keeps a connection open."""
    d = start_daemon(env={"CHCP_IDLE_TIMEOUT_MS": "1000"})
    c = H2((d.host, d.port))
    s = socket.create_connection((d.host, d.port))
    s.setblocking(False)
    t0 = time.monotonic()
    h1_closed_at = None
    while time.monotonic() - t0 < 8 and (not (c.closed or c.goaway) or h1_closed_at is None):
        if not (c.closed or c.goaway):
            c.ping()
            c.conn.update_settings({})
            c.conn.increment_flow_control_window(1)
            c.flush()
            c.pump(0.2)
        if h1_closed_at is None:
            try:
                s.send(b"\r\n")
                if closed_by_server(s, 0.2):
                    h1_closed_at = time.monotonic() - t0
            except OSError:
                h1_closed_at = time.monotonic() - t0
        else:
            time.sleep(0.2)
    assert c.closed or c.goaway, "HTTP/2 connection kept open by control frames"
    assert h1_closed_at is not None, "HTTP/1.1 connection kept open by line ends"
    assert time.monotonic() - t0 < 8
    c.close()
    s.close()


def test_header_deadline_is_not_renewed_by_trickling(start_daemon):
    d = start_daemon(env={"CHCP_HEADER_TIMEOUT_MS": "1000"})  # read timeout stays 30 s
    s = socket.create_connection((d.host, d.port))
    s.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
    t0 = time.monotonic()
    got = b""
    s.settimeout(0.1)
    while time.monotonic() - t0 < 10:
        try:
            s.send(b"a")
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        except socket.timeout:
            continue
        except OSError:
            break
    assert got.startswith(b"HTTP/1.1 408"), got[:100]
    assert time.monotonic() - t0 < 10
    s.close()


def test_body_deadline_is_not_renewed_by_trickling(start_daemon):
    """An HTTP/2 body dribbled a byte at a time, with PINGs in between, is
    reset at the read timeout."""
    d = start_daemon(env={"CHCP_READ_TIMEOUT_MS": "1500"})
    c = H2((d.host, d.port))
    sid = c.headers(API + "CreateVm", extra=[("content-length", "1000")])
    c.flush()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 and c.responses[sid]["reset"] is None and not c.closed:
        c.send_data(sid, b"{")
        c.ping()
        c.flush()
        c.pump(0.2)
    assert c.responses[sid]["reset"] == 8, c.responses[sid]  # CANCEL
    assert time.monotonic() - t0 < 10
    c.close()


def test_connections_are_drained_at_their_maximum_age(start_daemon):
    d = start_daemon(env={"CHCP_MAX_CONNECTION_AGE_MS": "1000"})
    # HTTP/2: GOAWAY(NO_ERROR), requests in flight still answered.
    c = H2((d.host, d.port))
    sids = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 6 and c.goaway is None and not c.closed:
        sids.append(c.post(API + "ListVms", b"{}"))
        c.pump(0.2)
    assert c.goaway is not None and c.goaway.error_code == 0, c.goaway
    c.pump(2.0, until=lambda: all(c.responses[s]["ended"] for s in sids))
    assert all(c.responses[s]["status"] == 200 for s in sids)
    c.close()
    # HTTP/1.1: the answer after the deadline says "connection: close".
    s = socket.create_connection((d.host, d.port), timeout=5)
    answers = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 6:
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            chunk = s.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        answers += chunk
        if b"connection: close" in chunk:
            break
        time.sleep(0.2)
    assert b"connection: close" in answers
    assert answers.count(b"HTTP/1.1 200") == answers.count(b"HTTP/1.1 ")
    assert closed_by_server(s, 3.0)
    s.close()
