"""deploy/grafana/chcp-dashboard.json and deploy/prometheus/prometheus.yml
against a real Prometheus (running that very configuration, pointed at a
test daemon's ports) scraping a real chcp on both of its ports:

- every query of every panel returns data (a number, not an empty result or
  NaN) after a workload that touches each of them;
- nothing is counted twice although each daemon is scraped twice: counter
  totals through the panels' aggregation equal the calls made;
- chcp's own `endpoint` label survives the scrape (no target label
  overwrites it into `exported_endpoint`);
- the template variables' queries run."""

import json
import math
import os
import re
import signal
import time

from chcp import SERVICE, vmm_pid
from peers import REPO, Prometheus, deploy_prometheus_config, wait_until

DASHBOARD = os.path.join(REPO, "deploy", "grafana", "chcp-dashboard.json")
METRIC_RE = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def dashboard_queries():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    assert out
    return dash, out


def expand(expr, job=".*"):
    return expr.replace("$__rate_interval", "1m").replace("$job", job).replace("$instance", ".*")


def values(prom, expr):
    data = prom.api("/api/v1/query", query=expr)
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    return [float(r["value"][1]) for r in data["result"]]


def workload(chcp, n):
    """Touch every panel: RPCs of several kinds (one failing on the server's
    side), VM operations, one VMM death. Round 1 also leaves a VM with
    devices running (per-VM metrics). Run twice: a series is born with its
    first value, so rate() only sees what happens once it exists."""
    if n == 1:
        assert chcp.call("CreateVm", {"vmId": "d1", "config": chcp.vm_config(devices=True)},
                         timeout=30)[0] == "ok"
        assert chcp.call("BootVm", {"vmId": "d1"}, timeout=30)[0] == "ok"
    vm = "d2-%d" % n
    assert chcp.call("CreateVm", {"vmId": vm, "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    assert chcp.call("BootVm", {"vmId": vm}, timeout=30)[0] == "ok"
    assert chcp.call("GetVmInfo", {"vmId": "d1"})[0] == "ok"
    assert chcp.call("ListVms", {})[0] == "ok"
    assert chcp.call("GetVmInfo", {"vmId": "nope"})[0] == "not_found"
    code, _ = chcp.call("CreateVm", {"vmId": "d3", "config": chcp.vm_config(["standin.crash_on=create"])},
                        timeout=30)
    assert code in ("unavailable", "internal"), code  # and the failed VM is gone again
    os.kill(vmm_pid(chcp, vm), signal.SIGKILL)  # a VMM exit
    wait_until(lambda: chcp.call("GetVmInfo", {"vmId": vm})[1].get("vm", {}).get("state") == "VM_STATE_CRASHED",
               20, "%s crashed" % vm)
    assert chcp.call("DeleteVm", {"vmId": vm}, timeout=30)[0] == "ok"


def test_every_panel_returns_data_and_counts_once(start_chcp, start_prometheus, receiver):
    dash, queries = dashboard_queries()
    assert dash["uid"] and dash["title"]
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "UNKEY_CHCP_OTEL_VM_METRICS": "true",
                            "UNKEY_CHCP_OTEL_VM_METRICS_INTERVAL_MS": "200"})
    prom = start_prometheus(None, config_text=deploy_prometheus_config(chcp.port, chcp.prom_port))
    for job in ("chcp", "chcp-api"):
        prom.wait_value('up{job="%s"}' % job, 1.0, timeout=20)
    workload(chcp, 1)
    time.sleep(2.5)  # scraped: every series exists now
    workload(chcp, 2)
    time.sleep(2.5)  # scraped again: every rate() sees round 2

    _, text = chcp.metrics_text(port=chcp.prom_port)
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
    empty = []
    for title, expr in queries:
        for name in METRIC_RE.findall(expr):
            assert name in exposed, "panel %r uses %s, which chcp does not expose" % (title, name)
        got = [v for v in values(prom, expand(expr)) if not math.isnan(v)]
        if not got:
            empty.append((title, expr))
    assert not empty, "panels without data:\n" + "\n".join("%s: %s" % e for e in empty)

    # Counted once: the panels' aggregation over the counters' totals (rate()
    # swapped for the latest value) equals what was done, not twice that.
    calls = _panel_expr(queries, "Request rate").replace("rate(", "max_over_time(")
    sent = _calls_made(text)
    assert sent >= 9
    assert values(prom, expand(calls)) == [sent], (calls, sent)
    vms = _panel_expr(queries, "VMs")
    assert values(prom, expand(vms)) == [1.0], "one VM (d1) runs"
    by_state = {m["state"]: float(v) for m, v in
                [(r["metric"], r["value"][1]) for r in
                 prom.api("/api/v1/query", query=expand(_panel_expr(queries, "VMs by state")))["result"]]}
    assert by_state.get("RUNNING") == 1.0, by_state
    # Per job alone, each port shows the same total: the join does not hide data.
    for job in ("chcp", "chcp-api"):
        assert values(prom, expand(calls, job=job)) == [sent], job

    # chcp's `endpoint` label arrives as is.
    endpoints = {r["metric"].get("endpoint") for r in prom.api(
        "/api/v1/query", query='chcp_vmm_api_call_duration_seconds_count')["result"]}
    assert {"vm.create", "vm.boot", "vm.info"} <= endpoints, endpoints
    assert prom.api("/api/v1/query", query='count({exported_endpoint!=""})')["result"] == []

    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            m = re.match(r"label_values\((.*), (\w+)\)$", v["definition"])
            assert m, v["definition"]
            series = prom.api("/api/v1/series", **{"match[]": expand(m.group(1))})
            assert {s[m.group(2)] for s in series}, v["definition"]
    assert chcp.call("DeleteVm", {"vmId": "d1"}, timeout=30)[0] == "ok"


def _panel_expr(queries, title):
    found = [e for t, e in queries if t == title]
    assert len(found) == 1, title
    return found[0]


def _calls_made(text):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("rpc_server_requests_total{") and SERVICE in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_prometheus_start_accepts_a_whole_config():
    """The harness's own check: a Prometheus given the deploy file verbatim
    (ports swapped) loads it, so the test above runs the shipped file."""
    text = deploy_prometheus_config(8080, 9464)
    assert "127.0.0.1:9464" in text and "scrape_interval: 1s" in text
    assert "labels:" not in text, "target labels overwrite chcp's own (endpoint)"
    p = Prometheus(None, config_text=text)
    try:
        p.start()
    finally:
        p.stop()
