"""receiver.py - an OTLP/HTTP receiver that can be told to fail.

The exporter tests need a collector that misbehaves on purpose: answers 400,
429 or 503 (with or without Retry-After), hangs, or recovers. This one
decodes every request with OpenTelemetry's own protobuf classes (PyPI
`opentelemetry-proto`), so it also checks that what chcp sends is valid OTLP,
and it records each request: path, arrival and end time, the answer given,
the decoded spans or metrics, and how many requests were in flight at once.

It listens on 127.0.0.1 only, on a free port, in a thread of the test
process. Run it by hand with `python3 tests/o11y/receiver.py [port]` to watch
what a daemon exports.
"""

import gzip
import http.server
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

MAX_BODY = 64 << 20


@dataclass
class Request:
    path: str
    headers: dict
    started: float  # time.monotonic() when the request line arrived
    ended: float = 0.0
    status: int = 0
    body: bytes = b""
    message: object = None  # decoded Export*ServiceRequest, or None
    decode_error: str = ""
    spans: list = field(default_factory=list)  # (resource attrs dict, span) pairs
    metrics: list = field(default_factory=list)  # (resource attrs dict, metric) pairs


def attrs_to_dict(kvs):
    """OTLP KeyValue list -> {key: python value}."""
    out = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = getattr(v, kind) if kind else None
    return out


class Receiver:
    """A failing OTLP receiver. Change behaviour at any time with set_mode():

    - ("ok",)                      200 with an empty Export*ServiceResponse
    - ("status", code, headers)    answer `code` (e.g. 400, 429, 503) with headers
    - ("hang",)                    never answer (until release() or stop())
    - ("delay", seconds)           answer 200 after `seconds`
    - ("sequence", [mode, ...])    one mode per request, the last one repeats

    set_mode(..., path="/v1/traces") applies to that path only.
    """

    def __init__(self):
        self.lock = threading.RLock()  # predicates of wait_for() call snapshot()
        self.cond = threading.Condition(self.lock)
        self.requests = []
        self.in_flight = {}  # path -> requests being served now
        self.max_in_flight = {}  # path -> the most ever served at once
        self._modes = {None: ("ok",)}  # path (None: any) -> mode
        self._released = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def set_mode(self, *mode, path=None):
        """Answer requests (to `path` only, or to every path) this way."""
        with self.lock:
            if mode[0] == "sequence":
                self._modes[path] = ("sequence", list(mode[1]))
            else:
                self._modes[path] = tuple(mode)
            if path is None:
                for p in [p for p in self._modes if p is not None]:
                    del self._modes[p]
            if any(m[0] == "hang" for m in self._modes.values()):
                self._released.clear()
            else:
                self._released.set()

    def release(self):
        """Let hanging requests go (they then answer 200)."""
        self._released.set()

    def _next_mode(self, path):
        with self.lock:
            key = path if path in self._modes else None
            mode = self._modes.get(key, ("ok",))
            if mode[0] == "sequence":
                seq = mode[1]
                return tuple(seq.pop(0) if len(seq) > 1 else seq[0])
            return mode

    # ---- queries -----------------------------------------------------------

    def snapshot(self, path=None):
        """Answered requests, in order of arrival (handler threads may record
        them in another order)."""
        with self.lock:
            reqs = [r for r in self.requests if path is None or r.path == path]
        return sorted(reqs, key=lambda r: r.started)

    def spans(self):
        """Every span received (decoded) in requests that were answered 2xx."""
        out = []
        for r in self.snapshot():
            if 200 <= r.status < 300 and signal_of(r.path) == "traces":
                out.extend(r.spans)
        return out

    def metrics(self):
        """Every (resource, metric) received in requests answered 2xx."""
        out = []
        for r in self.snapshot():
            if 200 <= r.status < 300 and signal_of(r.path) == "metrics":
                out.extend(r.metrics)
        return out

    def wait_for(self, predicate, timeout, what="a condition"):
        """Wait (bounded) until predicate(receiver) is true; returns its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = predicate(self)
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "timed out after %.1f s waiting for %s; requests: %s"
                        % (timeout, what, [(r.path, r.status, round(r.started, 2)) for r in self.requests])
                    )
                self.cond.wait(min(left, 0.2))

    # ---- HTTP ----------------------------------------------------------------

    def _record(self, req):
        with self.cond:
            self.requests.append(req)
            self.cond.notify_all()

    def _handler_class(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    total = 0
                    while True:
                        line = self.rfile.readline(64)
                        n = int(line.split(b";")[0].strip() or b"0", 16)
                        if n == 0:
                            self.rfile.readline(64)
                            break
                        total += n
                        if total > MAX_BODY:
                            raise ValueError("body too large")
                        chunks.append(self.rfile.read(n))
                        self.rfile.readline(64)
                    body = b"".join(chunks)
                else:
                    n = int(self.headers.get("Content-Length", "0"))
                    if n > MAX_BODY:
                        raise ValueError("body too large")
                    body = self.rfile.read(n)
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                return body

            def do_POST(self):
                req = Request(path=self.path, headers={k.lower(): v for k, v in self.headers.items()},
                              started=time.monotonic())
                with receiver.lock:
                    n = receiver.in_flight.get(req.path, 0) + 1
                    receiver.in_flight[req.path] = n
                    receiver.max_in_flight[req.path] = max(receiver.max_in_flight.get(req.path, 0), n)
                self._counted = True
                try:
                    self._serve(req)
                finally:
                    self._not_in_flight(req)

            def _not_in_flight(self, req):
                """A request stops being in flight once its answer is decided,
                before it is written: the client may send the next one as soon
                as it reads the answer."""
                if not self._counted:
                    return
                self._counted = False
                with receiver.cond:
                    receiver.in_flight[req.path] -= 1
                    receiver.cond.notify_all()

            def _hold(self, limit):
                """Wait for release(); False if the client hung up first."""
                deadline = time.monotonic() + limit
                while time.monotonic() < deadline:
                    if receiver._released.wait(0.05):
                        return True
                    r, _, _ = select.select([self.connection], [], [], 0)
                    if r:
                        try:
                            if self.connection.recv(1, socket.MSG_PEEK) == b"":
                                return False
                        except OSError:
                            return False
                return True

            def _serve(self, req):
                try:
                    req.body = self._read_body()
                    decode(req)
                except Exception as e:  # a malformed request is recorded, answered 400
                    req.decode_error = "%s: %s" % (type(e).__name__, e)
                mode = receiver._next_mode(req.path)
                if mode[0] == "hang":
                    # Hold the request until released, or until the client
                    # gives up and closes (an abandoned request is no longer
                    # in flight). Bounded: tests stop us.
                    if not self._hold(120):
                        req.ended = time.monotonic()
                        req.status = -1  # abandoned by the client
                        receiver._record(req)
                        return
                    mode = ("ok",)
                elif mode[0] == "delay":
                    time.sleep(mode[1])
                    mode = ("ok",)
                if req.decode_error:
                    mode = ("status", 400, {})
                if mode[0] == "ok":
                    status, headers, payload = 200, {}, _empty_response(req.path)
                else:
                    status, headers, payload = mode[1], dict(mode[2] if len(mode) > 2 else {}), b""
                req.status = status
                self._not_in_flight(req)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in headers.items():
                        self.send_header(k, str(v))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                except OSError:
                    pass  # the exporter gave up on us (its timeout): still record
                req.ended = time.monotonic()
                receiver._record(req)

        return Handler


def signal_of(path):
    """The OTLP signal a path carries: /v1/traces, or any custom path that
    names it (per-signal endpoints such as /custom/traces)."""
    if "trace" in path:
        return "traces"
    if "metric" in path:
        return "metrics"
    return None


def _empty_response(path):
    if signal_of(path) == "traces":
        return trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
    if signal_of(path) == "metrics":
        return metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
    return b""


def decode(req):
    """Parse the body as the OTLP message its path names."""
    if signal_of(req.path) == "traces":
        msg = trace_service_pb2.ExportTraceServiceRequest()
        msg.ParseFromString(req.body)
        req.message = msg
        for rs in msg.resource_spans:
            res = attrs_to_dict(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    req.spans.append((res, s))
    elif signal_of(req.path) == "metrics":
        msg = metrics_service_pb2.ExportMetricsServiceRequest()
        msg.ParseFromString(req.body)
        req.message = msg
        for rm in msg.resource_metrics:
            res = attrs_to_dict(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    req.metrics.append((res, m))
    else:
        raise ValueError("unexpected path %s" % req.path)


if __name__ == "__main__":
    r = Receiver()
    if len(sys.argv) > 1:
        r.server.server_close()
        r.server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), r._handler_class())
        r.port = int(sys.argv[1])
        r.thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    r.start()
    print("OTLP receiver on %s (Ctrl-C to stop)" % r.endpoint, flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            reqs = r.snapshot()
            for q in reqs[seen:]:
                print("%s -> %d: %d span(s), %d metric(s) %s" % (
                    q.path, q.status, len(q.spans), len(q.metrics), q.decode_error), flush=True)
                for _, s in q.spans:
                    print("   span %s %s parent=%s" % (s.trace_id.hex(), s.name, s.parent_span_id.hex()))
            seen = len(reqs)
    except KeyboardInterrupt:
        r.stop()
