"""chcp's hand-written OTLP/protobuf encoder, checked with the OpenTelemetry
project's own generated classes (PyPI opentelemetry-proto): every field the
encoder writes must decode to what the sample program put in."""
import os
import subprocess

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

SAMPLE = os.environ.get("OTLP_SAMPLE", "build/asan/tests/otlp_sample")


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    d = tmp_path_factory.mktemp("otlp")
    spans, metrics = d / "spans.bin", d / "metrics.bin"
    subprocess.run([SAMPLE, str(spans), str(metrics)], check=True)
    return spans.read_bytes(), metrics.read_bytes()


def attrs(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def test_spans(payloads):
    req = trace_service_pb2.ExportTraceServiceRequest.FromString(payloads[0])
    assert len(req.resource_spans) == 1
    rs = req.resource_spans[0]
    assert attrs(rs.resource.attributes) == {"service.name": "chcp-test", "service.version": "9.9.9"}
    ss = rs.scope_spans[0]
    assert (ss.scope.name, ss.scope.version) == ("chcp", "1.2.3")
    by_name = {s.name: s for s in ss.spans}
    root = by_name["cloudhypervisor.v1.VmService/CreateVm"]
    child = by_name["vmm PUT vm.boot"]
    assert root.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert root.parent_span_id.hex() == "00f067aa0ba902b7"
    assert root.trace_state == "a=b"
    assert root.kind == 2 and child.kind == 3
    assert child.trace_id == root.trace_id and child.parent_span_id == root.span_id
    assert len(root.span_id) == 8 and root.span_id != child.span_id
    assert root.end_time_unix_nano >= root.start_time_unix_nano > 1_600_000_000 * 10**9
    a = attrs(root.attributes)
    assert {k: a[k] for k in ("rpc.service", "rpc.method", "rpc.system", "rpc.grpc.status_code", "ratio", "retry",
                              "network.peer.address", "network.peer.port")} == {
        "rpc.service": "cloudhypervisor.v1.VmService", "rpc.method": "CreateVm",  # the pre-encoded block
        "rpc.system": "connect_rpc", "rpc.grpc.status_code": 5, "ratio": 0.25, "retry": True,
        "network.peer.address": "127.0.0.1", "network.peer.port": 41000}
    assert a["big"] == "x" * 2999  # spilled out of the inline arena
    assert {k: a[k] for k in a if k.startswith("n") and k[1:].isdigit()} == {"n%d" % i: i for i in range(20)}
    assert len(root.attributes) == 8 + 1 + 20 and root.dropped_attributes_count == 0
    assert len(root.events) == 1, "a span from the pool carries nothing of its last life"
    assert root.events[0].name == "vm.state"
    assert attrs(root.events[0].attributes) == {"state": "RUNNING"}
    assert root.status.code == 0
    assert child.status.code == 2 and child.status.message == "boot failed"
    # flags: sampled, HAS_IS_REMOTE; the root's parent is remote, the child's is not.
    assert root.flags & 0xFF == 1 and root.flags & 0x300 == 0x300
    assert child.flags & 0x300 == 0x100


def test_metrics(payloads):
    req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(payloads[1])
    sm = req.resource_metrics[0].scope_metrics[0]
    m = {x.name: x for x in sm.metrics}
    c = m["rpc.server.requests"]
    assert c.unit == "{request}" and c.description == "Requests."
    assert c.sum.is_monotonic and c.sum.aggregation_temporality == 2
    dp = c.sum.data_points[0]
    assert dp.as_double == 3 and attrs(dp.attributes) == {"rpc.method": "CreateVm"}
    assert dp.time_unix_nano >= dp.start_time_unix_nano > 0
    u = m["rpc.server.active_requests"]
    assert not u.sum.is_monotonic and u.sum.data_points[0].as_double == 1
    assert m["process.uptime"].gauge.data_points[0].as_double == 12.5
    h = m["rpc.server.request.duration"].histogram
    assert h.aggregation_temporality == 2
    hp = h.data_points[0]
    assert hp.count == 3 and hp.sum == pytest.approx(5.55)
    assert list(hp.explicit_bounds) == [0.1, 1.0]
    assert list(hp.bucket_counts) == [1, 1, 1]
    assert hp.min == 0.05 and hp.max == 5
