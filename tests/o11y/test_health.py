"""/_/health: a JSON report (status, version, uptime, process CPU and memory,
load, the VMM binary and its version, VM counts by state, the telemetry
exporter) that follows what the daemon does: "degraded" while the collector
fails (still 200: the API serves), 503 "unhealthy" without a VMM binary."""

import json
import os

from peers import free_port, wait_until


def health(chcp):
    st, hdrs, body = chcp.health()
    assert hdrs.get("content-type", "").startswith("application/json"), hdrs
    return st, json.loads(body)


def vm_counts(doc):
    """VM counts by state, lower-case state names."""
    return {k.lower(): v for k, v in doc["vms"]["by_state"].items()}


def test_health_report(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint})
    st, doc = health(chcp)
    assert st == 200 and doc["status"] == "ok", doc
    assert doc["version"]
    assert doc["uptime_seconds"] >= 0
    proc = doc["process"]
    assert proc["cpu_user_seconds"] + proc["cpu_system_seconds"] > 0, proc
    assert proc["rss_bytes"] > 1 << 20, proc
    assert len(doc["load"]) == 3 and all(x >= 0 for x in doc["load"]), doc["load"]
    vmm = doc["vmm"]
    assert vmm["binary"] in (chcp.env["CHCP_CH_BINARY"], os.path.realpath(chcp.env["CHCP_CH_BINARY"])), vmm
    assert vmm["available"] is True, vmm
    # `cloud-hypervisor --version` is probed once at start, asynchronously.
    version = wait_until(lambda: health(chcp)[1]["vmm"]["version"], 10, "the VMM version in /_/health")
    assert "v54" in version, version  # what the stand-in answers, like CH v54
    tel = doc["telemetry"]
    assert tel["enabled"] is True and tel["healthy"] is True, tel
    assert sum(vm_counts(doc).values()) == doc["vms"]["total"] == 0

    assert chcp.call("CreateVm", {"vmId": "h1", "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    assert chcp.call("BootVm", {"vmId": "h1"}, timeout=30)[0] == "ok"
    st, doc = health(chcp)
    assert vm_counts(doc)["running"] == 1 and doc["vms"]["total"] == 1, doc["vms"]
    assert chcp.call("DeleteVm", {"vmId": "h1"}, timeout=30)[0] == "ok"
    st, doc = health(chcp)
    assert doc["vms"]["total"] == 0 and vm_counts(doc)["running"] == 0, doc["vms"]
    # The uptime moves on.
    _, later = health(chcp)
    assert later["uptime_seconds"] > 0


def test_health_reports_exporter_failure(start_chcp, receiver):
    receiver.set_mode("status", 400, {})
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "CHCP_OTEL_METRIC_INTERVAL_MS": "600000"})
    assert chcp.call("ListVms", {})[0] == "ok"
    receiver.wait_for(lambda r: r.snapshot("/v1/traces"), 10, "an export")

    def failing():
        st, d = health(chcp)
        return (st, d) if d["telemetry"]["healthy"] is False else None

    st, doc = wait_until(failing, 10, "the health report to show the failing exporter")
    tel = doc["telemetry"]
    assert "400" in tel["last_error"], tel
    assert tel["spans_dropped"] >= 1 and tel["exports_failed"] >= 1, tel
    # A failing collector degrades the report but the daemon still serves.
    assert st == 200 and doc["status"] == "degraded", doc
    receiver.set_mode("ok")
    assert chcp.call("ListVms", {})[0] == "ok"
    wait_until(lambda: health(chcp)[1]["status"] == "ok", 10, "status ok again after the collector recovers")


def test_health_without_telemetry(start_chcp):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENABLED": "false", "UNKEY_CHCP_OTEL_ENDPOINT":
                            "http://127.0.0.1:%d" % free_port()}, prometheus=False)
    st, doc = health(chcp)
    assert st == 200 and doc["status"] == "ok", doc
    assert doc["telemetry"]["enabled"] is False, doc


def test_health_unhealthy_without_vmm_binary(start_chcp, tmp_path):
    # No CHCP_CH_BINARY and no cloud-hypervisor on PATH: chcp starts (it may
    # be installed later) but reports itself unhealthy.
    empty = tmp_path / "bin"
    empty.mkdir()
    chcp = start_chcp(env={"CHCP_CH_BINARY": None, "PATH": str(empty)}, prometheus=False)
    st, doc = health(chcp)
    assert st == 503 and doc["status"] == "unhealthy", (st, doc)
    assert doc["vmm"]["available"] is False, doc["vmm"]
