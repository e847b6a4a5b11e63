"""Sampling, asserted through Jaeger: ParentBased(TraceIdRatioBased(rate))
at rates 0, 0.5 and 1, errors always exported, incoming sampled/unsampled
traceparents honoured over the local rate.

"Nothing was exported" is only observable against something that was: each
test ends with a marker call that must be exported (a sampled traceparent or
a failing call). The batch processor exports in order, so once the marker is
in Jaeger everything before it has been exported or dropped for good."""

import pytest

from chcp import new_span_id, new_trace_id, traceparent
from peers import spans_named, tags
from test_traces import SERVER_ERROR_CODES, otel

LIST = "cloudhypervisor.v1.VmService/ListVms"


def marker(chcp, jaeger):
    """A sampled incoming traceparent: exported at any rate; wait for it."""
    tid, sid = new_trace_id(), new_span_id()
    code, doc = chcp.call("GetVmInfo", {"vmId": "marker"}, headers={"traceparent": traceparent(tid, sid)})
    assert code == "not_found", (code, doc)
    jaeger.wait_trace(tid)
    return tid


def list_traces(jaeger, chcp):
    return [t for t in jaeger.traces(chcp.service_name) if spans_named(t, LIST)]


def exported_total(chcp):
    _, text = chcp.metrics_text()
    for line in text.splitlines():
        if line.startswith("chcp_telemetry_spans_exported_total"):
            return float(line.split()[-1])
    raise AssertionError("chcp_telemetry_spans_exported_total missing")


@pytest.mark.parametrize("var", ["UNKEY_CHCP_OTEL_SAMPLING_RATE", "UNKEY_VMCP_OTEL_SAMPLING_RATE"])
def test_rate_zero_exports_only_errors_and_sampled_parents(jaeger, start_chcp, var):
    env = otel(jaeger)
    env["UNKEY_CHCP_OTEL_SAMPLING_RATE"] = None
    env[var] = "0"
    chcp = start_chcp(otel=env)
    for _ in range(10):
        code, doc = chcp.call("ListVms", {})
        assert code == "ok", (code, doc)
    # An incoming sampled parent is honoured at rate 0.
    tid, sid = new_trace_id(), new_span_id()
    assert chcp.call("ListVms", {}, headers={"traceparent": traceparent(tid, sid)})[0] == "ok"
    # A call failing in the VMM is always exported, with its child spans.
    code, doc = chcp.call("CreateVm", {"vmId": "o11y-s0", "config": chcp.vm_config(["standin.crash_on=create"])},
                          timeout=30)
    assert code in SERVER_ERROR_CODES, (code, doc)
    failed = jaeger.wait_traces(chcp.service_name, 1, predicate=lambda t: spans_named(
        t, "cloudhypervisor.v1.VmService/CreateVm"))
    assert len(failed) == 1
    err_trace = failed[0]
    assert spans_named(err_trace, "cloud-hypervisor vm.create"), [
        s["operationName"] for s in err_trace["spans"]]
    sampled = jaeger.wait_trace(tid)
    assert spans_named(sampled, LIST)
    marker(chcp, jaeger)
    # The ten unsampled successes never reached Jaeger.
    lists = list_traces(jaeger, chcp)
    assert [t["traceID"] for t in lists] == [tid], "rate 0 exported successful root calls"


def test_rate_one_exports_all_but_unsampled_parents(jaeger, start_chcp):
    chcp = start_chcp(otel=otel(jaeger, UNKEY_CHCP_OTEL_SAMPLING_RATE="1"))
    n = 12
    for _ in range(n):
        assert chcp.call("ListVms", {})[0] == "ok"
    unsampled = new_trace_id()
    hdr = {"traceparent": traceparent(unsampled, new_span_id(), sampled=False)}
    assert chcp.call("ListVms", {}, headers=hdr)[0] == "ok"
    marker(chcp, jaeger)
    lists = list_traces(jaeger, chcp)
    ids = {t["traceID"] for t in lists}
    assert unsampled not in ids, "an unsampled incoming traceparent must not be exported at rate 1"
    assert len(lists) == n, "rate 1 must export every root call: %d of %d" % (len(lists), n)
    assert jaeger.trace(unsampled) is None


def _ratio_samples(trace_id_hex, ratio):
    """TraceIdRatioBased: the low 8 bytes of the id, shifted right by one,
    below ratio * 2^63 (deterministic on the id, monotone in the ratio)."""
    x = int(trace_id_hex[16:32], 16)
    return (x >> 1) < int(ratio * (1 << 63))


def test_rate_half_samples_about_half_by_trace_id(jaeger, start_chcp):
    chcp = start_chcp(otel=otel(jaeger, UNKEY_CHCP_OTEL_SAMPLING_RATE="0.5"))
    n = 80
    for _ in range(n):
        assert chcp.call("ListVms", {})[0] == "ok"
    marker(chcp, jaeger)
    lists = list_traces(jaeger, chcp)
    # Binomial(80, 0.5): mean 40, sd 4.5; [20, 60] fails by chance ~1e-5.
    assert 20 <= len(lists) <= 60, "rate 0.5 exported %d of %d root calls" % (len(lists), n)
    for t in lists:
        assert _ratio_samples(t["traceID"], 0.5), "trace %s exported but not sampled by its id" % t["traceID"]
        span = spans_named(t, LIST)[0]
        assert tags(span).get("span.kind") == "server"
    assert exported_total(chcp) >= len(lists) + 1
