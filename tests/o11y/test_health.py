"""/_/health: a JSON report (status, version, uptime, cpu, memory, load, the
VMM binary and version, VM counts by state, the telemetry exporter) that
follows what the daemon does, and reports the exporter's failures."""

import json
import os

from peers import free_port, wait_until


def health(chcp):
    st, hdrs, body = chcp.health()
    assert hdrs.get("content-type", "").startswith("application/json"), hdrs
    return st, json.loads(body)


def find(doc, *names):
    """The first of `names` present at the top level or one level down."""
    for n in names:
        if n in doc:
            return doc[n]
    for v in doc.values():
        if isinstance(v, dict):
            for n in names:
                if n in v:
                    return v[n]
    raise AssertionError("none of %s in health report: %s" % (names, json.dumps(doc)[:2000]))


def test_health_report(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    st, doc = health(chcp)
    assert st == 200, doc
    assert doc["status"] in ("ok", "healthy", "serving"), doc
    assert isinstance(find(doc, "version"), str) and find(doc, "version")
    assert find(doc, "uptime_seconds", "uptime") >= 0
    for key in ("cpu", "memory", "load"):
        assert key in doc, "%s missing: %s" % (key, doc)
    vmm = doc["vmm"]
    assert vmm["binary"] == os.path.realpath(chcp.env["CHCP_CH_BINARY"]) or \
        vmm["binary"] == chcp.env["CHCP_CH_BINARY"], vmm
    assert vmm["version"], vmm  # the stand-in answers --version like CH
    tel = doc["telemetry"]
    assert tel["enabled"] is True, tel

    assert chcp.call("CreateVm", {"vmId": "h1", "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    assert chcp.call("BootVm", {"vmId": "h1"}, timeout=30)[0] == "ok"
    st, doc = health(chcp)
    assert vm_counts(doc).get("running") == 1, doc["vms"]
    assert chcp.call("DeleteVm", {"vmId": "h1"}, timeout=30)[0] == "ok"
    st, doc = health(chcp)
    assert not vm_counts(doc).get("running"), doc["vms"]


def vm_counts(doc):
    """VM counts by state (lower-case names), flat or under "by_state"."""
    vms = doc["vms"]
    assert isinstance(vms, dict), vms
    vms = vms.get("by_state", vms)
    return {k.lower(): v for k, v in vms.items() if isinstance(v, (int, float))}


def test_health_reports_exporter_failure(start_chcp, receiver):
    receiver.set_mode("status", 400, {})
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "CHCP_OTEL_METRIC_INTERVAL_MS": "600000"})
    st, doc = health(chcp)
    assert doc["telemetry"].get("healthy", True) is True, doc["telemetry"]
    assert chcp.call("ListVms", {})[0] == "ok"
    receiver.wait_for(lambda r: r.snapshot("/v1/traces"), 10, "an export")

    def failing():
        _, d = health(chcp)
        tel = d["telemetry"]
        return tel if tel.get("healthy") is False and "400" in json.dumps(tel) else None

    tel = wait_until(failing, 10, "the health report to show the failing exporter")
    assert tel["spans_dropped"] >= 1, tel
    # A failing collector does not make the daemon unhealthy: it still serves.
    st, doc = health(chcp)
    assert st == 200, doc


def test_health_without_telemetry(start_chcp):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENABLED": "false", "UNKEY_CHCP_OTEL_ENDPOINT":
                            "http://127.0.0.1:%d" % free_port()}, prometheus=False)
    st, doc = health(chcp)
    assert st == 200, doc
    assert doc["telemetry"]["enabled"] is False, doc
