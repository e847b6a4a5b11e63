"""test_headers_first.py - HTTP/2 requests are routed on their headers,
before any body: an unknown path, a wrong verb or a content type no protocol
serves gets 404/405/415 at once, even while the client still has a body to
send (connect-go answers the same way; before, such a request waited for its
body or the 30 s read timeout). HTTP/1.1 requests with a body are routed
once it is in (the connection must stay in step), body-less ones at once.

The HTTP/2 client is the `h2` package (tests/requirements.txt), so every frame
the server sends is checked, including the RST_STREAM(NO_ERROR) that tells the
client to stop sending the body nobody will read.
"""

import socket
import time

import h2.config
import h2.connection
import h2.events

ANSWER_WITHIN_S = 3.0  # far below the 30 s read timeout the old path hit


def h2_open(d):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    return s, conn


def h2_headers_only(d, path, content_type, method="POST"):
    """Send HEADERS without END_STREAM (a body is promised, never sent) and
    collect the answer: (status, headers, events seen, seconds taken)."""
    s, conn = h2_open(d)
    sid = conn.get_next_available_stream_id()
    headers = [(":method", method), (":path", path), (":scheme", "http"),
               (":authority", "x"), ("content-type", content_type)]
    t0 = time.monotonic()
    conn.send_headers(sid, headers, end_stream=False)
    s.sendall(conn.data_to_send())
    status, resp_headers, kinds = None, {}, []
    done = False
    while not done and time.monotonic() - t0 < ANSWER_WITHIN_S:
        s.settimeout(ANSWER_WITHIN_S)
        data = s.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            kinds.append(type(ev).__name__)
            if isinstance(ev, h2.events.ResponseReceived):
                resp_headers = {k.decode(): v.decode() for k, v in ev.headers}
                status = int(resp_headers[":status"])
            if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = done or isinstance(ev, h2.events.StreamReset)
                if isinstance(ev, h2.events.StreamEnded):
                    done = True
        s.sendall(conn.data_to_send())
    took = time.monotonic() - t0
    s.close()
    return status, resp_headers, kinds, took


def test_h2_unknown_path_answered_before_the_body(daemon):
    status, _, kinds, took = h2_headers_only(daemon, "/no.such.Service/Nope",
                                             "application/proto")
    assert status == 404, kinds
    assert took < ANSWER_WITHIN_S


def test_h2_wrong_content_type_answered_before_the_body(daemon):
    status, headers, kinds, took = h2_headers_only(
        daemon, "/cloudhypervisor.v1.VmService/ListVms", "image/jpeg")
    assert status == 415, kinds
    assert "application/proto" in headers.get("accept-post", "")
    assert took < ANSWER_WITHIN_S


def test_h2_wrong_verb_answered_before_the_body(daemon):
    status, headers, kinds, _ = h2_headers_only(
        daemon, "/cloudhypervisor.v1.VmService/CreateVm", "application/proto", method="PUT")
    assert status == 405, kinds
    assert headers.get("allow") == "POST"


def test_h2_stream_reset_after_early_answer(daemon):
    """The answer ends our side; the client's unfinished upload is cut with
    RST_STREAM(NO_ERROR), and the connection stays usable."""
    s, conn = h2_open(daemon)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":path", "/nope/Nope"), (":scheme", "http"),
                            (":authority", "x"), ("content-type", "application/proto")])
    s.sendall(conn.data_to_send())
    reset_code = None
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while reset_code is None and time.monotonic() < deadline:
        for ev in conn.receive_data(s.recv(65536)):
            if isinstance(ev, h2.events.StreamReset):
                reset_code = ev.error_code
        s.sendall(conn.data_to_send())
    assert reset_code == 0  # NO_ERROR
    # Same connection, next stream: a complete unary call still works.
    sid2 = conn.get_next_available_stream_id()
    conn.send_headers(sid2, [(":method", "POST"),
                             (":path", "/cloudhypervisor.v1.VmService/ListVms"),
                             (":scheme", "http"), (":authority", "x"),
                             ("content-type", "application/proto")], end_stream=True)
    s.sendall(conn.data_to_send())
    status = None
    deadline = time.monotonic() + 10
    while status is None and time.monotonic() < deadline:
        for ev in conn.receive_data(s.recv(65536)):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid2:
                status = int(dict(ev.headers)[b":status"])
        s.sendall(conn.data_to_send())
    assert status == 200
    s.close()


def test_h1_with_a_body_is_routed_whole(daemon):
    """HTTP/1.1 with a body (not a client or bidi stream): routed once the
    body is in, so the connection stays in step; a 404 keeps it alive."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        for _ in range(2):
            s.sendall(b"POST /no.such.Service/Nope HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/proto\r\nContent-Length: 3\r\n\r\nabc")
            head = s.recv(4096)
            assert head.startswith(b"HTTP/1.1 404"), head
            assert b"connection: close" not in head.lower()


def test_h1_bodyless_early_answer_keeps_the_connection(daemon):
    """A request without a body is whole at its headers: answering it there
    (the fallback: /health) keeps the connection alive."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        for _ in range(3):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = s.recv(4096)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"connection: close" not in head.lower()
