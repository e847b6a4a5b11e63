"""The peers themselves, independent of the daemon's wiring: Jaeger ingests
chcp's own OTLP encoding (tests/telemetry/otlp_sample) and its query API
shows it faithfully; Prometheus scrapes an exposition with awkward label
values; the failing receiver answers what it is told and decodes what it
gets. If these fail, the other tests' failures say nothing about chcp."""

import http.server
import io
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

import jaeger_tree
from peers import REPO, parent_id, process_of, spans_named, tags

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    exe = os.environ.get("OTLP_SAMPLE", os.path.join(REPO, "build", "asan", "tests", "otlp_sample"))
    if not os.access(exe, os.X_OK):
        raise AssertionError("%s missing: make B=build/asan SAN=1 build/asan/tests/otlp_sample "
                             "(make o11y-test builds it)" % exe)
    d = tmp_path_factory.mktemp("otlp")
    spans, metrics = str(d / "spans.bin"), str(d / "metrics.bin")
    subprocess.run([exe, spans, metrics], check=True, timeout=30)
    with open(spans, "rb") as f:
        s = f.read()
    with open(metrics, "rb") as f:
        m = f.read()
    return s, m


def post(url, body, timeout=10):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_jaeger_ingests_chcp_otlp(jaeger, sample):
    spans, _ = sample
    st, _ = post(jaeger.otlp_endpoint + "/v1/traces", spans)
    assert st == 200
    trace = jaeger.wait_trace(TRACE, predicate=lambda t: len(t["spans"]) == 2)
    root = spans_named(trace, "cloudhypervisor.v1.VmService/CreateVm")[0]
    child = spans_named(trace, "vmm PUT vm.boot")[0]
    assert parent_id(root) == PARENT
    assert parent_id(child) == root["spanID"]
    rt = tags(root)
    assert rt["span.kind"] == "server" and rt["rpc.system"] == "connect_rpc"
    assert rt["rpc.grpc.status_code"] == 5 and rt["ratio"] == 0.25 and rt["retry"] is True, rt
    ct = tags(child)
    assert ct["span.kind"] == "client" and ct["error"] is True and ct["otel.status_code"] == "ERROR", ct
    events = [{f["key"]: f["value"] for f in log["fields"]} for log in root["logs"]]
    assert {"event": "vm.state", "state": "RUNNING"} in events, events
    # jaeger_tree.py (the stand-in for Jaeger's UI) draws the same tree.
    out = io.StringIO()
    jaeger_tree.print_trace(trace, out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "trace %s  (remote parent %s)" % (TRACE, PARENT), lines
    server_line = next(i for i, ln in enumerate(lines) if ln.endswith("server   cloudhypervisor.v1.VmService/CreateVm"))
    client_line = next(i for i, ln in enumerate(lines) if "client   vmm PUT vm.boot ERROR" in ln)
    assert server_line < client_line
    assert any("event=vm.state" in ln and "state=RUNNING" in ln for ln in lines), lines
    proc = process_of(trace, root)
    assert proc["serviceName"] == "chcp-test"
    assert tags(proc)["service.version"] == "9.9.9"
    assert "chcp-test" in jaeger.services()


def test_receiver_modes_and_decoding(receiver, sample):
    spans, metrics = sample
    receiver.set_mode("sequence", [("status", 503, {"Retry-After": "3"}), ("status", 400, {}), ("ok",)])
    st, hdrs = post(receiver.endpoint + "/v1/traces", spans)
    assert st == 503 and hdrs.get("Retry-After") == "3"
    assert post(receiver.endpoint + "/v1/traces", spans)[0] == 400
    assert post(receiver.endpoint + "/v1/traces", spans)[0] == 200
    assert post(receiver.endpoint + "/v1/metrics", metrics)[0] == 200
    reqs = receiver.wait_for(lambda r: len(r.snapshot("/v1/traces")) == 3 and r.snapshot("/v1/traces"), 5,
                             "three requests recorded")
    assert [r.status for r in reqs] == [503, 400, 200]
    assert len(receiver.spans()) == 2  # only the 200 counts as delivered
    res, s = receiver.spans()[0]
    assert res["service.name"] == "chcp-test" and s.trace_id.hex() == TRACE
    mreq = receiver.wait_for(lambda r: r.snapshot("/v1/metrics"), 5, "the metrics request")[0]
    names = {m.name for _, m in mreq.metrics}
    assert {"rpc.server.requests", "rpc.server.request.duration"} <= names
    assert post(receiver.endpoint + "/v1/traces", b"\xff\xff\xff")[0] == 400  # garbage is refused
    bad = receiver.wait_for(lambda r: len(r.snapshot("/v1/traces")) == 4 and r.snapshot("/v1/traces")[-1], 5,
                            "the garbage request to be recorded")
    assert bad.decode_error and bad.status == 400

    receiver.set_mode("hang")
    t0 = time.monotonic()
    with pytest.raises(OSError):
        post(receiver.endpoint + "/v1/traces", spans, timeout=0.5)
    assert time.monotonic() - t0 < 5
    # The client gave up: the receiver notices, and it is no longer in flight.
    gone = receiver.wait_for(lambda r: r.in_flight.get("/v1/traces") == 0 and r.snapshot("/v1/traces")[-1], 5,
                             "the abandoned request to end")
    assert gone.status == -1
    receiver.release()
    assert receiver.max_in_flight["/v1/traces"] == 1


EXPOSITION = (
    '# HELP demo_total A demo counter.\n'
    '# TYPE demo_total counter\n'
    'demo_total{path="a\\"b\\\\c\\nd"} 3\n'
    'demo_total{path="plain"} 4\n'
)


def test_prometheus_scrapes_and_unescapes(start_prometheus):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = EXPOSITION.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        prom = start_prometheus([("static", "127.0.0.1:%d" % srv.server_address[1], "/metrics")])
        prom.wait_value('sum(demo_total{job="static"})', 7.0, timeout=20)
        got = {m["path"]: v for m, v in prom.query('demo_total{job="static"}')}
        assert got == {'a"b\\c\nd': 3.0, "plain": 4.0}, got
    finally:
        srv.shutdown()
        srv.server_close()
