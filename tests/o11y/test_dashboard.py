"""deploy/grafana/chcp-dashboard.json against a real Prometheus scraping a
real chcp: every panel's PromQL is valid, and every metric it names is one
chcp exposes (after a VM has lived and died, so every family has series)."""

import json
import os
import re

from peers import REPO

DASHBOARD = os.path.join(REPO, "deploy", "grafana", "chcp-dashboard.json")
# A metric name is what a selector's braces follow (every panel selects by job).
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


def expand(expr):
    return expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*")


def test_dashboard_queries_run_and_name_real_metrics(start_chcp, start_prometheus, receiver):
    dash, queries = dashboard_queries()
    assert dash["uid"] and dash["title"]
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    assert chcp.call("CreateVm", {"vmId": "d1", "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    assert chcp.call("BootVm", {"vmId": "d1"}, timeout=30)[0] == "ok"
    assert chcp.call("DeleteVm", {"vmId": "d1"}, timeout=30)[0] == "ok"
    assert chcp.call("GetVmInfo", {"vmId": "d1"})[0] == "not_found"
    _, text = chcp.metrics_text(port=chcp.prom_port)
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
    prom = start_prometheus([("chcp", "127.0.0.1:%d" % chcp.prom_port, "/metrics")])
    prom.wait_value('up{job="chcp"}', 1.0, timeout=20)
    for title, expr in queries:
        names = METRIC_RE.findall(expr)
        assert names, "no metric selector found in %r" % expr
        for name in names:
            assert name in exposed, "panel %r uses %s, which chcp does not expose" % (title, name)
        prom.api("/api/v1/query", query=expand(expr))  # raises unless Prometheus accepts it
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            m = re.match(r"label_values\((.*), (\w+)\)$", v["definition"])
            assert m, v["definition"]
            prom.api("/api/v1/series", **{"match[]": expand(m.group(1))})
