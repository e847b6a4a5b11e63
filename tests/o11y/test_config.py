"""Telemetry configuration from the environment, observed from outside:
which endpoint gets the spans (UNKEY_CHCP_OTEL_ENDPOINT over
OTEL_EXPORTER_OTLP_ENDPOINT), the resource names, and when the Prometheus
port listens (on by default with telemetry, off when told)."""

import socket

from chcp import SERVICE
from peers import free_port
from receiver import Receiver


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_otel_exporter_otlp_endpoint_is_the_fallback(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": None, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    assert chcp.call("ListVms", {})[0] == "ok"
    got = receiver.wait_for(lambda r: r.spans(), 10, "a span via OTEL_EXPORTER_OTLP_ENDPOINT")
    res, span = got[0]
    assert span.name == "%s/ListVms" % SERVICE
    assert res["service.name"] == chcp.service_name
    assert res["service.version"] == "9.8.7-o11y"
    assert res["host.name"] == socket.gethostname()
    assert res["service.instance.id"]
    req = receiver.snapshot("/v1/traces")[0]
    assert req.headers["content-type"] == "application/x-protobuf"


def test_unkey_endpoint_wins_over_otel_exporter_endpoint(start_chcp, receiver):
    other = Receiver().start()
    try:
        chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                                "OTEL_EXPORTER_OTLP_ENDPOINT": other.endpoint})
        assert chcp.call("ListVms", {})[0] == "ok"
        receiver.wait_for(lambda r: r.spans(), 10, "a span at UNKEY_CHCP_OTEL_ENDPOINT")
        assert chcp.call("GetVmInfo", {"vmId": "x"})[0] == "not_found"
        receiver.wait_for(lambda r: len(r.spans()) >= 2, 10, "the second span")
        assert other.snapshot() == [], "OTEL_EXPORTER_OTLP_ENDPOINT used although UNKEY_CHCP_OTEL_ENDPOINT is set"
    finally:
        other.stop()


def test_prometheus_port_defaults_on_with_telemetry(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED": None})
    hdrs, text = chcp.metrics_text(port=chcp.prom_port)
    assert "rpc_server_requests_total" in text or "target_info" in text
    # The API port serves the same families.
    _, api_text = chcp.metrics_text()
    fam = lambda t: {ln.split()[2] for ln in t.splitlines() if ln.startswith("# TYPE ")}  # noqa: E731
    assert fam(text) == fam(api_text)


def test_prometheus_port_off_when_disabled(start_chcp, receiver):
    port = free_port()
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "UNKEY_CHCP_OTEL_PROMETHEUS_PORT": str(port)}, prometheus=False)
    assert chcp.env["UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED"] == "false"
    assert chcp.call("ListVms", {})[0] == "ok"
    receiver.wait_for(lambda r: r.spans(), 10, "spans still exported")
    assert not port_open(port), "the Prometheus port listens although disabled"
