"""test_stream_backpressure.py - a client that does not read cannot make the
daemon hold more than a bounded amount, and a client that resets a stream
reaches the handler.

The stream is gRPC server reflection (a bidi stream the daemon always
serves): the client asks for a ~30 KiB file descriptor tens of thousands of
times and never reads the answers (no WINDOW_UPDATE from the h2 client).
The daemon may send one window (64 KiB) and queue one high-water mark more;
then it stops reading requests, the client's flow-control window fills and
the client is blocked. Unbounded buffering would need gigabytes; the test
allows the daemon's RSS to grow by a few MiB (the input window it keeps is
bounded by one request body of the largest size). Resetting the stream ends
the call: the active-request gauge returns to zero.
"""

import os
import socket
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

PATH = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def active_requests(d):
    status, _, body = d.http("GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("rpc_server_active_requests"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def request_frame():
    # ServerReflectionRequest{file_by_filename = 3: "cloudhypervisor/v1/vm.proto"}
    name = b"cloudhypervisor/v1/vm.proto"
    msg = b"\x1a" + bytes([len(name)]) + name
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def test_slow_reader_is_bounded_and_reset_reaches_the_handler(start_daemon):
    # Under ASan freed memory sits in a quarantine (256 MiB by default) and
    # would show as growth: keep it small so RSS tracks what is held.
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    daemon = start_daemon(env={"ASAN_OPTIONS": asan + ":quarantine_size_mb=4"})
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":path", PATH), (":scheme", "http"),
                            (":authority", "x"), ("content-type", "application/grpc"),
                            ("te", "trailers")])
    s.sendall(conn.data_to_send())
    s.setblocking(False)

    def pump():
        # Read what the server sends (its frames are processed, its DATA is
        # never acknowledged), and push out what we queued.
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    raise AssertionError("server closed the connection")
                conn.receive_data(data)
        except BlockingIOError:
            pass
        out = conn.data_to_send()
        while out:
            try:
                n = s.send(out)
                out = out[n:]
            except BlockingIOError:
                time.sleep(0.01)

    pid = daemon.proc.pid
    base = rss_kib(pid)
    frame = request_frame()
    sent = 0
    blocked_since = None
    deadline = time.monotonic() + 60
    # Send until the daemon stops taking requests (our window is spent) and
    # stays that way for a while.
    while time.monotonic() < deadline:
        pump()
        window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        if window >= len(frame):
            conn.send_data(sid, frame * (window // len(frame)))
            sent += window // len(frame)
            blocked_since = None
            continue
        if blocked_since is None:
            blocked_since = time.monotonic()
        elif time.monotonic() - blocked_since > 2:
            break
        time.sleep(0.05)
    assert blocked_since is not None, "the daemon kept reading requests it could not answer"
    # Tens of thousands of ~30 KiB answers were asked for: gigabytes if queued.
    assert sent > 10000, sent
    grown = rss_kib(pid) - base
    print("requests sent %d, daemon RSS grew %d KiB" % (sent, grown))
    assert grown < 24 * 1024, "daemon RSS grew by %d KiB for a reader that does not read" % grown

    # The client gives up: the handler is told and the call ends.
    conn.reset_stream(sid, error_code=8)  # CANCEL
    pump()
    for _ in range(200):
        if active_requests(daemon) == 0:
            break
        time.sleep(0.05)
    assert active_requests(daemon) == 0
    s.close()
