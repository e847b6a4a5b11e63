"""The OTLP exporter against a collector that misbehaves (receiver.py): 400
is not retried and its spans are dropped and counted; 429 and 503 are retried
after Retry-After; a hanging or unreachable collector never slows the API, the
queue overflows into chcp_telemetry_spans_dropped_total, one export at most
is in flight, and the outage is logged once, its recovery once."""

import statistics
import time

import pytest

from peers import free_port, wait_until
from chcp import time_calls

# Metric pushes stay out of the way of span-export assertions here; the
# metric push has its own test in test_metrics.py.
QUIET_METRICS = {"CHCP_OTEL_METRIC_INTERVAL_MS": "600000"}


def counters(chcp):
    """The telemetry self-metrics from the Prometheus port."""
    _, text = chcp.metrics_text(port=chcp.prom_port)
    out = {}
    for line in text.splitlines():
        for name in ("chcp_telemetry_spans_dropped_total", "chcp_telemetry_spans_exported_total",
                     "chcp_telemetry_export_failures_total"):
            if line.startswith(name + " ") or line.startswith(name + "{"):
                out[name.replace("chcp_telemetry_", "").replace("_total", "")] = float(line.split()[-1])
    assert len(out) == 3, "telemetry self-metrics missing:\n" + text[:2000]
    return out


def failure_logs(chcp):
    return [r for r in chcp.log_records()
            if r.get("level") in ("warn", "warning", "error") and "export" in r.get("msg", "")]


def recovery_logs(chcp):
    return [r for r in chcp.log_records()
            if r.get("level") == "info" and "export" in r.get("msg", "") and "recover" in r.get("msg", "")]


def start(start_chcp, receiver, **extra):
    env = {"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint, **QUIET_METRICS}
    env.update(extra)
    return start_chcp(otel=env)


def traces_requests(receiver):
    return receiver.snapshot("/v1/traces")


def test_400_is_not_retried_dropped_and_logged_once(start_chcp, receiver):
    receiver.set_mode("status", 400, {}, path="/v1/traces")
    chcp = start(start_chcp, receiver)
    batches = 4
    for i in range(batches):
        assert chcp.call("ListVms", {})[0] == "ok"
        receiver.wait_for(lambda r, n=i + 1: len(traces_requests(r)) >= n, 10, "batch %d" % (i + 1))
    # The back-off would retry after >= 1 s: give it 2.5 s to (wrongly) do so.
    time.sleep(2.5)
    reqs = traces_requests(receiver)
    assert len(reqs) == batches, "400 must not be retried: %d requests for %d batches" % (len(reqs), batches)
    assert all(r.status == 400 for r in reqs)
    sent = sum(len(r.spans) for r in reqs)
    assert sent >= batches
    c = counters(chcp)
    assert c["spans_dropped"] == sent, c
    assert c["export_failures"] == batches, c
    assert c["spans_exported"] == 0, c
    assert len(failure_logs(chcp)) == 1, "the outage must be logged once: %s" % failure_logs(chcp)

    # Recovery: the next batch goes through and is logged once.
    receiver.set_mode("ok")
    assert chcp.call("ListVms", {})[0] == "ok"
    receiver.wait_for(lambda r: r.spans(), 10, "a span after recovery")
    wait_until(lambda: counters(chcp)["spans_exported"] == len(receiver.spans()), 10, "exported count")
    wait_until(lambda: len(recovery_logs(chcp)) == 1, 5, "one recovery log line")
    assert len(failure_logs(chcp)) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_retryable_status_honours_retry_after(start_chcp, receiver, status):
    receiver.set_mode("sequence", [("status", status, {"Retry-After": "2"}),
                                   ("status", status, {"Retry-After": "1"}), ("ok",)], path="/v1/traces")
    chcp = start(start_chcp, receiver)
    assert chcp.call("ListVms", {})[0] == "ok"
    receiver.wait_for(lambda r: len(traces_requests(r)) >= 3, 15, "two retries")
    reqs = traces_requests(receiver)
    assert [r.status for r in reqs[:3]] == [status, status, 200], [r.status for r in reqs]
    gap1 = reqs[1].started - reqs[0].ended
    gap2 = reqs[2].started - reqs[1].ended
    assert 1.8 <= gap1 <= 4.0, "Retry-After: 2 not honoured (%.2f s)" % gap1
    assert 0.8 <= gap2 <= 3.0, "Retry-After: 1 not honoured (%.2f s)" % gap2
    # The same payload was retried; it arrived once, nothing was dropped.
    assert reqs[0].body == reqs[2].body
    time.sleep(0.5)
    assert len(traces_requests(receiver)) == 3
    c = counters(chcp)
    assert c["spans_dropped"] == 0 and c["export_failures"] == 0, c
    assert c["spans_exported"] == len(reqs[2].spans) >= 1, c
    assert receiver.max_in_flight.get("/v1/traces") == 1


def _latency_ok(baseline, during):
    """During a collector fault the API is as fast as before (generous
    bounds: ASan, a shared 2-core machine)."""
    b50 = statistics.median(baseline)
    d50 = statistics.median(during)
    assert d50 <= 3 * b50 + 0.02, "median latency %.1f ms vs %.1f ms before" % (d50 * 1e3, b50 * 1e3)
    # A blocked loop would show the exporter's 10 s request timeout.
    assert max(during) < 2.0, "a call took %.2f s while the collector misbehaved" % max(during)


def test_hanging_collector_overflows_queue_never_blocks(start_chcp, receiver):
    chcp = start(start_chcp, receiver)
    baseline = time_calls(chcp, 40)
    receiver.wait_for(lambda r: r.spans(), 10, "the baseline spans")
    receiver.set_mode("hang", path="/v1/traces")
    # 2048 spans queued + one batch (512) in flight; the rest must drop.
    n = 2800
    during = time_calls(chcp, n)
    _latency_ok(baseline, during)
    wait_until(lambda: counters(chcp)["spans_dropped"] >= n - 2048 - 512, 10, "queue overflow drops")
    assert receiver.max_in_flight.get("/v1/traces") == 1, receiver.max_in_flight
    assert chcp.proc.poll() is None
    receiver.set_mode("ok")  # releases the hung request; the queue drains
    c = wait_until(lambda: (lambda c: c if c["spans_exported"] + c["spans_dropped"] >= 40 + n else None)(
        counters(chcp)), 40, "every span exported or dropped")
    assert c["spans_exported"] + c["spans_dropped"] == 40 + n, c
    assert receiver.max_in_flight.get("/v1/traces") == 1, receiver.max_in_flight


def test_slow_collector_never_blocks(start_chcp, receiver):
    chcp = start(start_chcp, receiver)
    baseline = time_calls(chcp, 30)
    receiver.set_mode("delay", 1.5, path="/v1/traces")
    during = time_calls(chcp, 300)
    _latency_ok(baseline, during)
    receiver.set_mode("ok")
    wait_until(lambda: counters(chcp)["spans_exported"] == 330, 30, "all 330 spans exported")
    assert counters(chcp)["spans_dropped"] == 0
    assert receiver.max_in_flight.get("/v1/traces") == 1, receiver.max_in_flight
    assert len(receiver.spans()) == 330


def test_unreachable_collector(start_chcp):
    """Nothing listens at the endpoint: connect failures are retried with
    back-off until the export deadline (30 s), then dropped and logged once;
    the API never notices."""
    port = free_port()  # nothing listens there
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": "http://127.0.0.1:%d" % port, **QUIET_METRICS})
    t0 = time.monotonic()
    baseline = time_calls(chcp, 30)
    during = time_calls(chcp, 200)
    _latency_ok(baseline, during)
    c = wait_until(lambda: (lambda c: c if c["spans_dropped"] >= 1 else None)(counters(chcp)), 45,
                   "spans dropped after the export deadline")
    assert time.monotonic() - t0 >= 20, "gave up too early: retries must continue for the export timeout"
    assert c["export_failures"] >= 1 and c["spans_exported"] == 0, c
    assert len(failure_logs(chcp)) == 1, failure_logs(chcp)
    assert chcp.proc.poll() is None


def test_503_forever_retries_until_the_deadline_then_drops(start_chcp, receiver):
    """A collector answering 503 (Retry-After: 1) forever: the batch is
    retried about once a second, one attempt at a time, until the export
    timeout (30 s); then its spans are dropped and the outage logged once.
    The API never slows down."""
    receiver.set_mode("status", 503, {"Retry-After": "1"}, path="/v1/traces")
    chcp = start(start_chcp, receiver)
    baseline = time_calls(chcp, 20)
    first = receiver.wait_for(lambda r: traces_requests(r), 10, "the first export")[0]
    during = time_calls(chcp, 200)
    _latency_ok(baseline, during)
    c = wait_until(lambda: (lambda c: c if c["spans_dropped"] >= 1 else None)(counters(chcp)), 45,
                   "the first batch dropped after the export timeout")
    reqs = traces_requests(receiver)
    same = [r for r in reqs if r.body == first.body]
    assert 15 <= len(same) <= 32, "%d attempts in the export timeout with Retry-After: 1" % len(same)
    gaps = [b.started - a.ended for a, b in zip(same, same[1:])]
    assert min(gaps) >= 0.8, "Retry-After: 1 not honoured: gaps %s" % gaps
    assert same[-1].started - same[0].started >= 20, "gave up before the export timeout"
    assert c["spans_dropped"] == len(first.spans) and c["spans_exported"] == 0, c
    assert receiver.max_in_flight.get("/v1/traces") == 1, receiver.max_in_flight
    assert len(failure_logs(chcp)) == 1, failure_logs(chcp)
    receiver.set_mode("ok")  # let the daemon flush quickly at teardown
