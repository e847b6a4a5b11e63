"""Health: /livez (the process answers), /readyz and /health (VmService can
do its job: recovery done, the VMM backend usable, not draining), and
/_/health, a JSON report (status, readiness, version, uptime, process CPU and
memory, load, the VMM binary and its version, VM counts by state, the
telemetry exporter) that follows what the daemon does: "degraded" while the
collector fails (still 200: the API serves), 503 "unhealthy" without a
usable VMM binary, 503 "recovering" until stored VMs are re-adopted."""

import json
import os
import shutil
import signal

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
    # Not ready (nothing could be created), but alive: no restart would help.
    st, body = get(chcp, "/health")
    assert st == 503 and "cloud-hypervisor" in body, (st, body)
    assert get(chcp, "/livez") == (200, "ok")


def get(chcp, path):
    st, _, body = chcp.http("GET", path)
    return st, body.decode()


def test_liveness_and_readiness_follow_the_vmm_binary(start_chcp, tmp_path):
    """The binary is checked on every probe: made non-executable, the daemon
    is live but not ready; fixed, ready again."""
    binary = tmp_path / "cloud-hypervisor"
    shutil.copy(os.environ.get("CHCP_CH_BINARY") or chcp_binary_default(), binary)
    binary.chmod(0o755)
    chcp = start_chcp(env={"CHCP_CH_BINARY": str(binary)}, prometheus=False)
    for path in ("/livez", "/readyz", "/health"):
        assert get(chcp, path) == (200, "ok"), path
    binary.chmod(0o644)
    st, body = get(chcp, "/readyz")
    assert st == 503 and body.startswith("not ready: ") and str(binary) in body, (st, body)
    assert get(chcp, "/health") == (st, body)
    assert get(chcp, "/livez") == (200, "ok")
    st, doc = health(chcp)
    assert st == 503 and doc["status"] == "unhealthy" and doc["ready"] is False and doc["live"] is True, doc
    assert str(binary) in doc["reason"], doc
    binary.chmod(0o755)
    assert get(chcp, "/readyz") == (200, "ok")
    assert health(chcp)[1]["ready"] is True
    for path in ("/livez", "/readyz"):
        st, hdrs, _ = chcp.http("POST", path, body=b"x")
        assert st == 405 and hdrs["allow"] == "GET, HEAD", (path, st, hdrs)
        st, _, body = chcp.http("HEAD", path)
        assert st == 200 and body == b"", path


def chcp_binary_default():
    from chcp import ch_binary
    return ch_binary()


def test_not_ready_while_recovering(start_chcp):
    """A restart re-adopts stored VMs; one whose VMM does not answer holds
    recovery up for its vm.info timeout (2 s). Meanwhile the daemon is live
    but not ready, and says why."""
    chcp = start_chcp(prometheus=False)
    assert chcp.call("CreateVm", {"vmId": "r1", "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    assert chcp.call("BootVm", {"vmId": "r1"}, timeout=30)[0] == "ok"
    from test_metrics import _vmm_pid
    pid = _vmm_pid(chcp)
    chcp.stop()  # VMs outlive the daemon
    os.kill(pid, signal.SIGSTOP)
    try:
        chcp.start(wait_listening=False)
        st, body = get(chcp, "/readyz")
        assert st == 503 and body.startswith("not ready: recovering stored VMs"), (st, body)
        assert get(chcp, "/livez") == (200, "ok")
        st, doc = health(chcp)
        assert st == 503 and doc["status"] == "recovering" and doc["live"] is True, doc
        wait_until(lambda: get(chcp, "/readyz") == (200, "ok"), 15, "readiness after recovery")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert chcp.call("DeleteVm", {"vmId": "r1"}, timeout=30)[0] == "ok"


def test_attach_mode_readiness(start_chcp, tmp_path):
    sock = tmp_path / "ch.sock"
    chcp = start_chcp(env={"CHCP_CH_ENDPOINT": "unix://%s" % sock}, prometheus=False)
    st, body = get(chcp, "/readyz")
    assert st == 503 and str(sock) in body, (st, body)
    assert get(chcp, "/livez") == (200, "ok")
