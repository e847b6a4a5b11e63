"""h2client.py - a small HTTP/2 (h2c, prior knowledge) client for hostile
tests, on the `h2` library: one socket per connection and full control of
what is sent - settings, flow-control windows, PINGs, streams that never
end, frames that ignore the server's windows.

    c = H2(("127.0.0.1", port), settings={INITIAL_WINDOW_SIZE: 0})
    sid = c.post("/cloudhypervisor.v1.VmService/ListVms", b"{}")
    c.pump(1.0)           # read and handle what the server sent
    c.responses[sid]      # {"status": 200, "headers": {...}, "body": b"", "ended": True, "reset": None}
"""

import select
import socket
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

INITIAL_WINDOW_SIZE = h2.settings.SettingCodes.INITIAL_WINDOW_SIZE
MAX_CONCURRENT_STREAMS = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
API = "/cloudhypervisor.v1.VmService/"


class H2:
    def __init__(self, addr, settings=None, unix=False, source=None, timeout=10.0, ack_data=True):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(addr)
        else:
            self.sock = socket.create_connection(
                addr, timeout=timeout, source_address=(source, 0) if source else None)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.ack_data = ack_data  # give received DATA back to the server's window
        self.responses = {}
        self.closed = False  # the server closed the connection (EOF or reset)
        self.goaway = None  # ConnectionTerminated event, if any
        self.pings_acked = 0
        self.conn.initiate_connection()
        self.flush()

    def fileno(self):
        return self.sock.fileno()

    # ---- sending -------------------------------------------------------------

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
                self.closed = True

    def headers(self, path, method="POST", content_type="application/json", extra=(), end=False):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"), (":authority", "chcp"), (":path", path)]
        if content_type:
            hdrs.append(("content-type", content_type))
        hdrs.extend(extra)
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self.responses[sid] = {"status": None, "headers": {}, "body": b"", "ended": False, "reset": None}
        return sid

    def post(self, path, body, content_type="application/json", extra=()):
        """A whole request (body within the stream's window); flushed."""
        sid = self.headers(path, content_type=content_type, extra=extra, end=not body)
        if body:
            self.send_data(sid, body, end=True)
        self.flush()
        return sid

    def window(self, sid):
        try:
            return self.conn.local_flow_control_window(sid)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError, KeyError):
            return 0

    def send_data(self, sid, data, end=False):
        """Send as much of data as the server's windows allow; returns how
        many bytes went (not flushed)."""
        sent = 0
        frame = self.conn.max_outbound_frame_size
        while sent < len(data):
            room = min(self.window(sid), frame, len(data) - sent)
            if room <= 0:
                break
            last = end and sent + room == len(data)
            try:
                self.conn.send_data(sid, data[sent:sent + room], end_stream=last)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                break
            sent += room
        if end and sent == len(data) == 0:
            self.conn.end_stream(sid)
        return sent

    def raw_data_frame(self, sid, payload, end=False):
        """A DATA frame written past h2's flow-control bookkeeping, as a client
        that ignores the server's windows would send it."""
        flags = 0x1 if end else 0
        hdr = struct.pack(">I", len(payload))[1:] + bytes([0x0, flags]) + struct.pack(">I", sid)
        self.flush()
        try:
            self.sock.sendall(hdr + payload)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.closed = True

    def ping(self):
        try:
            self.conn.ping(b"hostile!")
        except h2.exceptions.ProtocolError:  # after GOAWAY
            return False
        self.flush()
        return True

    # ---- receiving -------------------------------------------------------------

    def _handle(self, ev):
        r = self.responses.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived) and r is not None:
            r["headers"] = dict(ev.headers)
            r["status"] = int(r["headers"].get(":status", 0))
        elif isinstance(ev, h2.events.TrailersReceived) and r is not None:
            r["headers"].update(dict(ev.headers))
        elif isinstance(ev, h2.events.DataReceived):
            if r is not None:
                r["body"] += ev.data
            if self.ack_data and ev.flow_controlled_length:
                try:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except (h2.exceptions.StreamClosedError, KeyError):
                    pass
        elif isinstance(ev, h2.events.StreamEnded) and r is not None:
            r["ended"] = True
        elif isinstance(ev, h2.events.StreamReset) and r is not None:
            r["reset"] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
        elif isinstance(ev, h2.events.PingAckReceived):
            self.pings_acked += 1

    def read_once(self):
        """Read what is there (socket must be readable). False at EOF."""
        try:
            data = self.sock.recv(1 << 16)
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for ev in events:
            self._handle(ev)
        self.flush()
        return True

    def pump(self, timeout, until=None):
        """Read and handle frames for up to `timeout` s, or until until() is true."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if until and until():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                break
            p = select.poll()  # select() cannot watch fds >= 1024
            p.register(self.sock, select.POLLIN)
            if p.poll(left * 1000):
                self.read_once()
        return bool(until and until())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def pump_all(clients, timeout, until=None):
    """Read from many connections at once until `until()` or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if until and until():
            return True
        live = [c for c in clients if not c.closed]
        left = deadline - time.monotonic()
        if not live or left <= 0:
            return bool(until and until())
        p = select.poll()
        for c in live:
            p.register(c.sock, select.POLLIN)
        fdmap = {c.sock.fileno(): c for c in live}
        for fd, _ in p.poll(max(0.0, min(left, 0.2)) * 1000):
            fdmap[fd].read_once()
