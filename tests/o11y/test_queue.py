"""The span queue between the event loop and the export thread: elastic
while exports keep succeeding (a burst larger than the 2048-span default is
absorbed, nothing dropped), a hard limit when OTEL_BSP_MAX_QUEUE_SIZE is set
(the specification's semantics: the same burst drops). The hung-collector
case (capped at 2048 while the export is stalled) is test_exporter_faults'.

The exporter is slowed down on purpose so that the queue fills: batches of
4 spans (OTEL_BSP_MAX_EXPORT_BATCH_SIZE) to a receiver that answers each
after 20 ms, i.e. about 200 spans/s leave while the clients make spans
several times faster."""

import json
import threading
import time

from peers import wait_until
from test_exporter_faults import QUIET_METRICS, counters

BURST = 3000


def burst(chcp, n, threads=4):
    """n ListVms calls from a few clients at once."""
    errors = []

    def client(k):
        c = chcp.client()
        try:
            for _ in range(k):
                code, doc = c.call("ListVms", {})
                if code != "ok":
                    errors.append((code, doc))
        finally:
            c.close()

    ts = [threading.Thread(target=client, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    return ts, errors


def queue_peak(chcp, ts):
    """The longest queue /_/health reported while the clients ran."""
    peak = 0
    while any(t.is_alive() for t in ts):
        st, _, body = chcp.health()
        peak = max(peak, json.loads(body)["telemetry"]["queue"])
        time.sleep(0.05)
    for t in ts:
        t.join()
    return peak


def slow_exporter(receiver, **extra):
    receiver.set_mode("delay", 0.02, path="/v1/traces")
    env = {"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4",
           "CHCP_OTEL_BATCH_DELAY_MS": "50", **QUIET_METRICS}
    env.update(extra)
    return env


def test_queue_grows_while_exports_succeed(start_chcp, receiver):
    chcp = start_chcp(otel=slow_exporter(receiver))
    ts, errors = burst(chcp, BURST)
    peak = queue_peak(chcp, ts)
    assert not errors, errors[:3]
    assert peak > 2048, "the burst did not fill the queue past its default (%d): nothing was tested" % peak
    c = wait_until(lambda: (lambda c: c if c["spans_exported"] + c["spans_dropped"] >= BURST else None)(
        counters(chcp)), 60, "every span exported or dropped")
    assert c["spans_dropped"] == 0 and c["spans_exported"] == BURST, c
    assert not [r for r in chcp.log_records() if "queue full" in r.get("msg", "")]


def test_fixed_queue_size_drops_the_same_burst(start_chcp, receiver):
    chcp = start_chcp(otel=slow_exporter(receiver, OTEL_BSP_MAX_QUEUE_SIZE="2048"))
    ts, errors = burst(chcp, BURST)
    peak = queue_peak(chcp, ts)
    assert not errors, errors[:3]
    assert peak <= 2048, peak
    c = wait_until(lambda: (lambda c: c if c["spans_exported"] + c["spans_dropped"] >= BURST else None)(
        counters(chcp)), 60, "every span exported or dropped")
    assert c["spans_dropped"] > 0 and c["spans_exported"] + c["spans_dropped"] == BURST, c
    full = [r for r in chcp.log_records() if "queue full" in r.get("msg", "")]
    assert len(full) >= 1 and all(r["level"] == "warn" for r in full), full
