"""chcp through a real OpenTelemetry Collector (core distribution, built by
scripts/o11y-deps.sh): the collector's OTLP/HTTP receiver accepts chcp's
gzip-compressed, header-carrying exports of both signals, refuses nothing,
and what it forwards (re-encoded by the collector's own OTLP exporter) to a
decoding receiver is what chcp sent: span identity, parentage, kinds,
statuses and attributes, the resource from OTEL_RESOURCE_ATTRIBUTES,
cumulative sums and histograms with chcp's bucket bounds, per-VM counters."""

from peers import Collector, wait_until
from receiver import Receiver

SERVICE = "cloudhypervisor.v1.VmService"


def own(collector, part):
    """The collector's own counter whose name contains `part` (0 when absent)."""
    return sum(v for k, v in collector.own_metrics().items() if part in k)


def test_chcp_through_the_collector(start_chcp, receiver):
    col = Collector(receiver.endpoint).start()
    try:
        chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": None,
                                "OTEL_EXPORTER_OTLP_ENDPOINT": col.otlp_endpoint,
                                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                                "OTEL_EXPORTER_OTLP_HEADERS": "x-chcp-test=1",
                                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=collector-test",
                                "UNKEY_CHCP_OTEL_VM_METRICS": "true",
                                "UNKEY_CHCP_OTEL_VM_METRICS_INTERVAL_MS": "200"})
        assert chcp.call("CreateVm", {"vmId": "c1", "config": chcp.vm_config(devices=True)}, timeout=30)[0] == "ok"
        assert chcp.call("BootVm", {"vmId": "c1"}, timeout=30)[0] == "ok"
        assert chcp.call("GetVmInfo", {"vmId": "nope"})[0] == "not_found"

        def forwarded():
            names = {s.name for _, s in receiver.spans()}
            metrics = {m.name for _, m in receiver.metrics()}
            return ({"%s/BootVm" % SERVICE, "vm.boot", "cloud-hypervisor vm.boot"} <= names and
                    {"rpc.server.request.duration", "chcp.vm.disk.io"} <= metrics)

        receiver.wait_for(lambda r: forwarded(), 30, "spans and metrics forwarded by the collector")
        wait_until(lambda: own(col, "receiver_accepted_spans") > 0 and own(col, "receiver_accepted_metric_points") > 0,
                   15, "the collector's own counters")
        assert own(col, "receiver_refused_spans") == 0
        assert own(col, "receiver_refused_metric_points") == 0

        spans = {s.name: (res, s) for res, s in receiver.spans()}
        res, boot = spans["%s/BootVm" % SERVICE]
        assert res["service.name"] == chcp.service_name
        assert res["deployment.environment"] == "collector-test", res
        _, op = spans["vm.boot"]
        _, call = spans["cloud-hypervisor vm.boot"]
        assert op.trace_id == boot.trace_id == call.trace_id
        assert op.parent_span_id == boot.span_id and call.parent_span_id == op.span_id
        assert (boot.kind, op.kind, call.kind) == (2, 1, 3)  # SERVER, INTERNAL, CLIENT
        attrs = {kv.key: kv.value for kv in boot.attributes}
        assert attrs["rpc.method"].string_value == "BootVm"
        assert attrs["network.peer.address"].string_value == "127.0.0.1"
        _, nf = spans["%s/GetVmInfo" % SERVICE]
        nfa = {kv.key: kv.value.string_value for kv in nf.attributes}
        assert nfa["rpc.connect_rpc.error_code"] == "not_found" and nf.status.code == 0  # UNSET

        metrics = {m.name: m for _, m in receiver.metrics()}
        hist = metrics["rpc.server.request.duration"].histogram
        assert hist.aggregation_temporality == 2
        bounds = list(hist.data_points[0].explicit_bounds)
        assert bounds[0] == 0.00005 and bounds[-1] == 60 and len(bounds) == 19, bounds
        disk = metrics["chcp.vm.disk.io"].sum
        assert disk.is_monotonic and disk.aggregation_temporality == 2
        pt = disk.data_points[0]
        labels = {kv.key: kv.value.string_value for kv in pt.attributes}
        assert labels["chcp.vm_id"] == "c1" and labels["chcp.vm.device"] == "disk0", labels
        assert pt.as_double > 0 and 0 < pt.start_time_unix_nano < pt.time_unix_nano
        # The headers chcp sent stop at the collector (core has no header
        # forwarding); chcp's own arrival at a receiver is test_config's.
        assert all("x-chcp-test" not in q.headers for q in receiver.snapshot())
        assert chcp.call("DeleteVm", {"vmId": "c1"}, timeout=30)[0] == "ok"
    finally:
        col.stop()


def test_collector_sees_chcp_headers_and_gzip(start_chcp):
    """The same exports, straight to a receiver: what the collector was sent."""
    r = Receiver().start()
    try:
        chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": r.endpoint,
                                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                                "OTEL_EXPORTER_OTLP_HEADERS": "x-chcp-test=1"})
        assert chcp.call("ListVms", {})[0] == "ok"
        r.wait_for(lambda x: x.spans() and x.metrics(), 15, "both signals")
        for q in r.snapshot():
            assert q.headers.get("content-encoding") == "gzip" and q.headers.get("x-chcp-test") == "1", q.headers
            assert not q.decode_error
    finally:
        r.stop()
