"""Metrics, asserted through a real Prometheus scraping chcp (both the API
port's /metrics and the Prometheus port) and through `promtool check
metrics`: request counts equal the calls made, histograms agree with counts,
VM state gauges and transitions follow a VM's life, VMM call latency and
exits are counted, process and telemetry self-metrics exist, and the
exposition stays valid whatever a client puts in a label."""

import os
import re
import signal
import socket
import subprocess
import time

from chcp import SERVICE, Chcp, buf_curl, vmm_pid
from peers import wait_until

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JOBS = ("chcp-prom", "chcp-api")

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """{(name, frozenset(labels)): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "unparseable sample line: %r" % line
        labels = {}
        if m.group(3):
            labels = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                      for k, v in LABEL_RE.findall(m.group(3))}
        key = (m.group(1), frozenset(labels.items()))
        assert key not in out, "duplicate series %r" % (key,)
        out[key] = float(m.group(4))
    return out


def promtool_check(text):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (
        "promtool check metrics:\n%s%s" % (r.stdout, r.stderr))


def scrape_both(start_prometheus, chcp):
    prom = start_prometheus([
        ("chcp-prom", "127.0.0.1:%d" % chcp.prom_port, "/metrics"),
        ("chcp-api", "127.0.0.1:%d" % chcp.port, "/metrics"),
    ])
    for job in JOBS:
        prom.wait_value('up{job="%s"}' % job, 1.0, timeout=20)
    return prom


def settle(prom, chcp, expr_by_job):
    """Wait until every job's scrape shows the value /metrics shows now."""
    for job in JOBS:
        for expr, want in expr_by_job.items():
            prom.wait_value(expr.replace("JOB", job), want, timeout=20)


def test_rpc_metrics_in_prometheus(start_chcp, start_prometheus, receiver, schema_image):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    prom = scrape_both(start_prometheus, chcp)
    for _ in range(7):
        assert chcp.call("ListVms", {})[0] == "ok"
    for _ in range(3):
        assert chcp.call("GetVmInfo", {"vmId": "nope"})[0] == "not_found"
    assert buf_curl(chcp, schema_image, "ListVms", {}, protocol="grpc", http2=True)[0] == "ok"
    assert buf_curl(chcp, schema_image, "GetVmInfo", {"vmId": "nope"}, protocol="grpcweb")[0] == "not_found"

    sel = 'job="JOB",rpc_service="%s"' % SERVICE
    settle(prom, chcp, {
        'sum(rpc_server_requests_total{%s,rpc_method="ListVms"})' % sel: 8.0,
        'sum(rpc_server_requests_total{%s,rpc_method="GetVmInfo"})' % sel: 4.0,
        'sum(rpc_server_requests_total{%s,rpc_method="GetVmInfo",rpc_code="not_found"})' % sel: 4.0,
        'sum(rpc_server_request_duration_seconds_count{%s,rpc_method="ListVms"})' % sel: 8.0,
        'sum(rpc_server_request_duration_seconds_bucket{%s,rpc_method="ListVms",le="+Inf"})' % sel: 8.0,
        'sum(rpc_server_active_requests{%s})' % sel: 0.0,
    })
    # A histogram's sum is positive and below count * a generous bound.
    s = prom.scalar('sum(rpc_server_request_duration_seconds_sum{job="chcp-prom",rpc_method="ListVms"})')
    assert 0 < s < 8 * 5, s
    # The p50 is a real quantile from real buckets.
    q = prom.scalar('histogram_quantile(0.5, sum by (le) (rpc_server_request_duration_seconds_bucket'
                    '{job="chcp-prom",rpc_method="ListVms"}))')
    assert q is not None and 0 < q <= 10, q

    # Resource, process and telemetry self-metrics.
    ti = prom.query('target_info{job="chcp-prom"}')
    assert len(ti) == 1 and ti[0][1] == 1.0, ti
    assert ti[0][0]["service_name"] == chcp.service_name, ti
    assert ti[0][0]["service_version"] == "9.8.7-o11y", ti
    assert prom.scalar('process_uptime_seconds{job="chcp-prom"}') > 0
    assert prom.scalar('process_memory_usage_bytes{job="chcp-prom"}') > 1 << 20
    assert prom.scalar('sum(process_cpu_time_seconds_total{job="chcp-prom"})') > 0
    assert {m["cpu_mode"] for m, _ in prom.query('process_cpu_time_seconds_total{job="chcp-prom"}')} >= {
        "user", "system"}
    for name in ("chcp_telemetry_spans_dropped_total", "chcp_telemetry_spans_exported_total",
                 "chcp_telemetry_export_failures_total"):
        assert prom.scalar('%s{job="chcp-prom"}' % name) is not None, name
    # The spans exported count matches what the receiver got.
    receiver.wait_for(lambda r: len(r.spans()) >= 12, 15, "12 spans at the receiver")
    prom.wait_value('chcp_telemetry_spans_exported_total{job="chcp-prom"}', float(len(receiver.spans())),
                    timeout=20)


def test_exposition_is_valid_and_promtool_clean(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    assert chcp.call("ListVms", {})[0] == "ok"
    # Method names with quotes, backslashes and encoded newlines: whatever ends
    # up in a label must keep the exposition valid.
    for path in ('/%s/Bad"Method\\x' % SERVICE, "/%s/Bad%%0AMethod%%22" % SERVICE, "/Weird\"Service/X"):
        raw = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: 2\r\nConnection: close\r\n\r\n{}" % path).encode()
        with socket.create_connection(("127.0.0.1", chcp.port), timeout=10) as s:
            s.sendall(raw)
            s.settimeout(10)
            assert s.recv(65536).startswith(b"HTTP/1.1 "), path
    for port in (chcp.prom_port, chcp.port):
        hdrs, text = chcp.metrics_text(port=port)
        assert hdrs["content-type"] == CONTENT_TYPE, hdrs
        assert text.endswith("\n")
        promtool_check(text)
        series = parse_exposition(text)
        names = {n for n, _ in series}
        for want in ("rpc_server_requests_total", "rpc_server_request_duration_seconds_bucket",
                     "rpc_server_request_duration_seconds_sum", "rpc_server_request_duration_seconds_count",
                     "rpc_server_active_requests", "process_cpu_time_seconds_total",
                     "process_memory_usage_bytes", "process_uptime_seconds", "target_info",
                     "chcp_telemetry_spans_dropped_total", "chcp_telemetry_spans_exported_total",
                     "chcp_telemetry_export_failures_total"):
            assert want in names, "%s missing from /metrics on port %d" % (want, port)
        # +Inf bucket equals _count for every histogram series.
        for (name, labels), v in series.items():
            if name.endswith("_bucket") and dict(labels).get("le") == "+Inf":
                base = name[: -len("_bucket")]
                rest = frozenset((k, x) for k, x in labels if k != "le")
                assert series[(base + "_count", rest)] == v, (name, labels)
    assert chcp.proc.poll() is None


def test_label_values_round_trip_through_prometheus(start_chcp, start_prometheus, receiver):
    """Whatever label values the daemon emits, Prometheus stores the same
    series the text shows (escaping survives the scrape)."""
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    assert chcp.call("ListVms", {})[0] == "ok"
    assert chcp.call("GetVmInfo", {"vmId": "nope"})[0] == "not_found"
    for path in ('/%s/Quote"Me' % SERVICE, "/%s/Back\\slash" % SERVICE):
        raw = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: 2\r\nConnection: close\r\n\r\n{}" % path).encode()
        with socket.create_connection(("127.0.0.1", chcp.port), timeout=10) as s:
            s.sendall(raw)
            s.settimeout(10)
            s.recv(65536)
    prom = scrape_both(start_prometheus, chcp)
    _, text = chcp.metrics_text(port=chcp.prom_port)
    want = {frozenset(kv for kv in labels if kv[0] != "le") for (n, labels) in parse_exposition(text)
            if n == "rpc_server_requests_total"}
    assert want, "no rpc_server_requests_total series"

    def stored():
        got = {frozenset((k, v) for k, v in m.items() if k not in ("__name__", "job", "instance"))
               for m, _ in prom.query('rpc_server_requests_total{job="chcp-prom"}')}
        return got == want

    wait_until(stored, 20, "Prometheus to store the same series as /metrics shows")


def test_resource_label_with_quotes_and_newlines(start_chcp, start_prometheus, receiver):
    """The resource becomes target_info's labels: a service name with
    quotes and a backslash must be escaped in the exposition, pass promtool,
    and reach Prometheus unchanged. (A newline never gets that far: the
    configuration refuses control characters, see below.)"""
    weird = 'chcp "edge"\\case {x="y"}'
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "UNKEY_CHCP_OTEL_SERVICE_NAME": weird})
    for port in (chcp.prom_port, chcp.port):
        _, text = chcp.metrics_text(port=port)
        promtool_check(text)
        names = [dict(labels).get("service_name") for (n, labels) in parse_exposition(text) if n == "target_info"]
        assert names == [weird], names
    prom = scrape_both(start_prometheus, chcp)
    got = prom.query('target_info{job="chcp-prom"}')
    assert [m["service_name"] for m, _ in got] == [weird], got
    # And the OTLP resource carries the same bytes.
    assert chcp.call("ListVms", {})[0] == "ok"
    res, _ = receiver.wait_for(lambda r: r.spans(), 10, "a span")[0]
    assert res["service.name"] == weird


def test_control_characters_in_resource_are_refused():
    c = Chcp(otel={"UNKEY_CHCP_OTEL_SERVICE_NAME": "two\nlines"})
    try:
        try:
            c.start()
        except AssertionError as e:
            assert "UNKEY_CHCP_OTEL_SERVICE_NAME" in str(e) and "control character" in str(e), e
        else:
            raise AssertionError("a service name with a newline was accepted")
        assert c.proc.wait(10) == 2
    finally:
        c.cleanup()


def _vms_by_state(prom):
    return {m["state"].lower(): v for m, v in prom.query('chcp_vms{job="chcp-prom"}')}


def test_vm_metrics_follow_a_vm(start_chcp, start_prometheus, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    prom = scrape_both(start_prometheus, chcp)
    assert chcp.call("CreateVm", {"vmId": "m1", "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    assert chcp.call("BootVm", {"vmId": "m1"}, timeout=30)[0] == "ok"
    wait_until(lambda: _vms_by_state(prom).get("running") == 1.0, 20, "chcp_vms{state=running} == 1")
    trans = {(m["from"].lower(), m["to"].lower()): v
             for m, v in prom.query('chcp_vm_state_transitions_total{job="chcp-prom"}')}
    assert sum(v for (f, t), v in trans.items() if t == "running") >= 1, trans
    ops = {m["operation"].lower() for m, v in
           prom.query('chcp_vm_operation_duration_seconds_count{job="chcp-prom"} > 0')}
    assert {"create", "boot"} <= ops, ops
    calls = {(m["endpoint"], m["outcome"]) for m, v in
             prom.query('chcp_vmm_api_call_duration_seconds_count{job="chcp-prom"} > 0')}
    assert any(e == "vm.boot" for e, _ in calls), calls
    assert any(e == "vm.create" for e, _ in calls), calls

    # The VMM dies: chcp_vmm_exits_total counts it, the VM leaves RUNNING.
    before = prom.scalar('sum(chcp_vmm_exits_total{job="chcp-prom"})') or 0.0
    pid = _vmm_pid(chcp)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: (prom.scalar('sum(chcp_vmm_exits_total{job="chcp-prom"})') or 0) >= before + 1, 20,
               "chcp_vmm_exits_total to count the VMM's death")
    wait_until(lambda: _vms_by_state(prom).get("running", 0.0) == 0.0 and
               _vms_by_state(prom).get("crashed") == 1.0, 20, "the VM counted as crashed, not running")
    assert chcp.call("DeleteVm", {"vmId": "m1"}, timeout=30)[0] == "ok"
    wait_until(lambda: sum(_vms_by_state(prom).values()) == 0.0, 20, "no VM counted after DeleteVm")


def _vmm_pid(chcp):
    return vmm_pid(chcp)


def test_otlp_metric_push_is_cumulative(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    for _ in range(5):
        assert chcp.call("ListVms", {})[0] == "ok"

    def requests_metric(r):
        pts = []
        for q in r.snapshot("/v1/metrics"):
            for res, m in q.metrics:
                if m.name == "rpc.server.requests":
                    for dp in m.sum.data_points:
                        a = {kv.key: kv.value.string_value for kv in dp.attributes}
                        if a.get("rpc.method") == "ListVms":
                            pts.append((q, res, m, dp))
        return pts

    pts = receiver.wait_for(lambda r: [p for p in requests_metric(r) if p[3].as_int + p[3].as_double >= 5],
                            15, "an OTLP metric push with ListVms == 5")
    q, res, m, dp = pts[-1]
    assert res["service.name"] == chcp.service_name
    assert m.sum.is_monotonic and m.sum.aggregation_temporality == 2  # CUMULATIVE
    assert dp.as_int + dp.as_double == 5
    assert dp.start_time_unix_nano and dp.time_unix_nano > dp.start_time_unix_nano
    # Pushes keep coming every interval (500 ms in tests), start time fixed.
    n0 = len(receiver.snapshot("/v1/metrics"))
    receiver.wait_for(lambda r: len(r.snapshot("/v1/metrics")) >= n0 + 2, 10, "two more metric pushes")
    later = requests_metric(receiver)[-1][3]
    assert later.start_time_unix_nano == dp.start_time_unix_nano
    assert later.as_int + later.as_double == 5
    hist = [mm for q2 in receiver.snapshot("/v1/metrics") for _, mm in q2.metrics
            if mm.name == "rpc.server.request.duration"]
    assert hist and hist[-1].histogram.aggregation_temporality == 2


def test_active_requests_counts_a_call_in_progress(start_chcp, receiver):
    import threading

    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    assert chcp.call("CreateVm", {"vmId": "slow", "config": chcp.vm_config(["standin.boot_delay_ms=1500"])},
                     timeout=30)[0] == "ok"
    result = {}

    def boot():  # on a second connection
        c2 = chcp.client()
        result["boot"] = c2.call("BootVm", {"vmId": "slow"}, timeout=30)[0]
        c2.close()

    th = threading.Thread(target=boot)
    th.start()

    def active():
        _, text = chcp.metrics_text(port=chcp.prom_port)
        for (name, labels), v in parse_exposition(text).items():
            if name == "rpc_server_active_requests" and dict(labels).get("rpc_method") == "BootVm":
                return v
        return 0.0

    try:
        wait_until(lambda: active() == 1.0, 5, "rpc_server_active_requests{rpc_method=BootVm} == 1")
    finally:
        th.join(30)
    assert result.get("boot") == "ok", result
    assert active() == 0.0
    assert chcp.call("DeleteVm", {"vmId": "slow"}, timeout=30)[0] == "ok"


DEFAULT_BOUNDS = ["5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                  "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "+Inf"]


def _bounds(text, name, method):
    return [dict(labels)["le"] for (n, labels), _ in parse_exposition(text).items()
            if n == name + "_bucket" and dict(labels).get("rpc_method") == method]


def test_rpc_system_label_and_duration_buckets(start_chcp, start_prometheus, receiver, schema_image):
    """Every RPC metric carries rpc_system; the duration histograms resolve
    50 µs to 60 s (the le values spelt as Go's clients spell them)."""
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    prom = scrape_both(start_prometheus, chcp)
    assert chcp.call("ListVms", {})[0] == "ok"
    assert buf_curl(chcp, schema_image, "ListVms", {}, protocol="grpc", http2=True)[0] == "ok"
    assert buf_curl(chcp, schema_image, "ListVms", {}, protocol="grpcweb")[0] == "ok"
    for system in ("connect_rpc", "grpc", "grpc_web"):
        prom.wait_value('sum(rpc_server_requests_total{job="chcp-prom",rpc_method="ListVms",rpc_system="%s"})'
                        % system, 1.0)
        prom.wait_value('sum(rpc_server_request_duration_seconds_count{job="chcp-prom",rpc_system="%s"})'
                        % system, 1.0)
    assert prom.scalar('count(rpc_server_active_requests{job="chcp-prom",rpc_system=""})') is None
    _, text = chcp.metrics_text(port=chcp.prom_port)
    got = _bounds(text, "rpc_server_request_duration_seconds", "ListVms")
    assert got[:len(DEFAULT_BOUNDS)] == DEFAULT_BOUNDS, got
    # Prometheus reads the le values as those numbers (10 is "10", not "1e+01").
    les = {m["le"] for m, _ in prom.query('rpc_server_request_duration_seconds_bucket{job="chcp-prom"}')}
    assert {"5e-05", "0.001", "10", "60", "+Inf"} <= les, les


def test_duration_buckets_are_configurable(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "UNKEY_CHCP_OTEL_DURATION_BUCKETS": "0.0001,0.5,2"})
    assert chcp.call("ListVms", {})[0] == "ok"
    _, text = chcp.metrics_text(port=chcp.prom_port)
    assert _bounds(text, "rpc_server_request_duration_seconds", "ListVms") == ["0.0001", "0.5", "2", "+Inf"]
    promtool_check(text)
    # The OTLP histogram carries the same bounds.
    pts = receiver.wait_for(lambda r: [m for _, m in r.metrics() if m.name == "rpc.server.request.duration"],
                            15, "the duration histogram over OTLP")
    assert list(pts[-1].histogram.data_points[0].explicit_bounds) == [0.0001, 0.5, 2]


def test_get_vm_info_calls_the_vmm_and_is_measured(start_chcp, start_prometheus, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    prom = scrape_both(start_prometheus, chcp)
    assert chcp.call("CreateVm", {"vmId": "i1", "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    assert chcp.call("BootVm", {"vmId": "i1"}, timeout=30)[0] == "ok"
    for _ in range(3):
        assert chcp.call("GetVmInfo", {"vmId": "i1"})[0] == "ok"
    prom.wait_value('sum(chcp_vmm_api_call_duration_seconds_count{job="chcp-prom",endpoint="vm.info",'
                    'outcome="ok"})', 3.0)
    assert chcp.call("DeleteVm", {"vmId": "i1"}, timeout=30)[0] == "ok"


def _per_vm(prom, expr):
    return {(m.get("chcp_vm_id"), m.get("chcp_vm_device"), m.get("disk_io_direction") or
             m.get("network_io_direction") or m.get("counter")): v for m, v in prom.query(expr)}


def test_per_vm_metrics_from_vm_counters(start_chcp, start_prometheus, receiver):
    """Opt-in, capped, read from each VMM's vm.counters, gone with the VM."""
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "UNKEY_CHCP_OTEL_VM_METRICS": "true",
                            "UNKEY_CHCP_OTEL_VM_METRICS_MAX_VMS": "1",
                            "UNKEY_CHCP_OTEL_VM_METRICS_INTERVAL_MS": "200"})
    prom = scrape_both(start_prometheus, chcp)
    for vm in ("pv-a", "pv-b"):
        assert chcp.call("CreateVm", {"vmId": vm, "config": chcp.vm_config(devices=True)}, timeout=30)[0] == "ok"
        assert chcp.call("BootVm", {"vmId": vm}, timeout=30)[0] == "ok"

    def disk():
        return _per_vm(prom, 'chcp_vm_disk_io_bytes_total{job="chcp-prom"}')

    got = wait_until(lambda: disk() or None, 20, "per-VM disk metrics in Prometheus")
    # The cap: only the first VM by id has series; the other is counted.
    assert {k[0] for k in got} == {"pv-a"}, got
    assert set(got) == {("pv-a", "disk0", "read"), ("pv-a", "disk0", "write")}, got
    prom.wait_value('chcp_vm_metrics_vms{job="chcp-prom",state="skipped"}', 1.0)
    prom.wait_value('chcp_vm_metrics_vms{job="chcp-prom",state="collected"}', 1.0)
    assert any("per-VM metrics cover 1 VMs" in r.get("msg", "") for r in chcp.log_records())
    # The values are the VMM's, and they move (the stand-in counts its reads).
    first = got[("pv-a", "disk0", "read")]
    assert first > 0 and first % 4096 == 0, got
    wait_until(lambda: disk().get(("pv-a", "disk0", "read"), 0) > first, 20, "a later vm.counters read")
    net = _per_vm(prom, 'chcp_vm_network_io_bytes_total{job="chcp-prom"}')
    assert set(net) == {("pv-a", "net0", "receive"), ("pv-a", "net0", "transmit")}, net
    assert _per_vm(prom, 'chcp_vm_disk_operations_total{job="chcp-prom"}')
    assert _per_vm(prom, 'chcp_vm_network_packets_total{job="chcp-prom"}')
    _, text = chcp.metrics_text(port=chcp.prom_port)
    promtool_check(text)
    # Over OTLP: cumulative, starting when the VMM process started.
    pts = receiver.wait_for(lambda r: [m for _, m in r.metrics() if m.name == "chcp.vm.disk.io"], 15,
                            "chcp.vm.disk.io over OTLP")
    dp = pts[-1].sum.data_points[0]
    assert pts[-1].sum.is_monotonic and pts[-1].sum.aggregation_temporality == 2
    assert 0 < dp.start_time_unix_nano < dp.time_unix_nano
    assert dp.start_time_unix_nano > (time.time() - 600) * 1e9, "the VMM started minutes ago at most"

    # Deleted: its series go; the other VM takes the free place.
    assert chcp.call("DeleteVm", {"vmId": "pv-a"}, timeout=30)[0] == "ok"
    wait_until(lambda: {k[0] for k in disk()} == {"pv-b"}, 20, "pv-a's series gone, pv-b's there")
    prom.wait_value('chcp_vm_metrics_vms{job="chcp-prom",state="skipped"}', 0.0)
    # A VM that is shut down has no counters: its series go too.
    assert chcp.call("ShutdownVm", {"vmId": "pv-b", "force": True}, timeout=30)[0] == "ok"
    wait_until(lambda: not disk(), 20, "no per-VM series once no VM runs")
    assert chcp.call("DeleteVm", {"vmId": "pv-b"}, timeout=30)[0] == "ok"


def test_per_vm_metrics_are_off_by_default(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    assert chcp.call("CreateVm", {"vmId": "off", "config": chcp.vm_config(devices=True)}, timeout=30)[0] == "ok"
    assert chcp.call("BootVm", {"vmId": "off"}, timeout=30)[0] == "ok"
    _, text = chcp.metrics_text(port=chcp.prom_port)
    assert "chcp_vm_disk_io" not in text and "chcp_vm_metrics_vms" not in text
    assert "vm.counters" not in text, "no vm.counters call without per-VM metrics"
    assert chcp.call("DeleteVm", {"vmId": "off"}, timeout=30)[0] == "ok"
