"""Telemetry configuration from the environment, observed from outside:
which endpoint gets the spans (UNKEY_CHCP_OTEL_ENDPOINT over
OTEL_EXPORTER_OTLP_ENDPOINT, per-signal endpoints over both), the resource
names (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), OTLP headers and gzip,
bad values refused at start, and when the Prometheus port listens (on by
default with telemetry, off when told)."""

import socket

from chcp import SERVICE, Chcp
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


# ---- the standard OTEL_* variables ---------------------------------------------------


def test_otlp_headers_reach_the_collector(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20s3cr3t==,x-tenant=a%2Cb",
                            "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-metrics-only=1"})
    assert chcp.call("ListVms", {})[0] == "ok"
    receiver.wait_for(lambda r: r.spans() and r.metrics(), 15, "spans and metrics")
    for q in receiver.snapshot():
        if q.path == "/v1/traces":
            assert q.headers["authorization"] == "Bearer s3cr3t==", q.headers
            assert q.headers["x-tenant"] == "a,b", q.headers
            assert "x-metrics-only" not in q.headers
        else:  # the signal-specific list replaces the generic one
            assert q.headers["x-metrics-only"] == "1", q.headers
            assert "authorization" not in q.headers, q.headers
        assert q.headers["user-agent"].startswith("chcp-otlp-exporter-c/"), q.headers


def test_resource_attributes_and_service_name(start_chcp, receiver):
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                            "UNKEY_CHCP_OTEL_SERVICE_NAME": None,
                            "OTEL_SERVICE_NAME": "from-otel-service-name",
                            "OTEL_RESOURCE_ATTRIBUTES": "service.name=loses,deployment.environment=staging,"
                                                        "host.name=vmhost-7,team=a%20b"})
    assert chcp.call("ListVms", {})[0] == "ok"
    res, _ = receiver.wait_for(lambda r: r.spans(), 10, "a span")[0]
    assert res["service.name"] == "from-otel-service-name", res
    assert res["deployment.environment"] == "staging" and res["team"] == "a b", res
    assert res["host.name"] == "vmhost-7", res
    assert res["service.version"] == "9.8.7-o11y" and res["telemetry.sdk.name"] == "chcp", res
    # The same resource is Prometheus' target_info.
    _, text = chcp.metrics_text(port=chcp.prom_port)
    info = [ln for ln in text.splitlines() if ln.startswith("target_info{")][0]
    for label in ('service_name="from-otel-service-name"', 'deployment_environment="staging"',
                  'host_name="vmhost-7"'):
        assert label in info, info


def test_gzip_and_per_signal_endpoints(start_chcp, receiver):
    other = Receiver().start()
    try:
        chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENDPOINT": receiver.endpoint,
                                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": other.endpoint + "/custom/metrics",
                                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"})
        assert chcp.call("ListVms", {})[0] == "ok"
        receiver.wait_for(lambda r: r.spans(), 10, "spans at the base endpoint")
        other.wait_for(lambda r: r.metrics(), 10, "metrics at the metrics endpoint")
        traces = receiver.snapshot("/v1/traces")
        assert traces and all(q.headers.get("content-encoding") == "gzip" for q in traces)
        assert all(not q.decode_error for q in traces)
        assert receiver.snapshot("/v1/metrics") == [], "metrics went to the base endpoint"
        metric_reqs = other.snapshot()
        assert {q.path for q in metric_reqs} == {"/custom/metrics"}
        assert all("content-encoding" not in q.headers for q in metric_reqs)
    finally:
        other.stop()


def test_bad_otel_variables_stop_the_daemon():
    cases = [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "no-equals-sign"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ({"UNKEY_CHCP_OTEL_ENDPOINT": "ftp://collector:4318"}, "UNKEY_CHCP_OTEL_ENDPOINT"),
        ({"UNKEY_CHCP_OTEL_CAPTURE_CODES": "sometimes"}, "UNKEY_CHCP_OTEL_CAPTURE_CODES"),
    ]
    for env, var in cases:
        c = Chcp(otel=env)
        try:
            try:
                c.start()
            except AssertionError as e:
                assert var in str(e), e
            else:
                raise AssertionError("%r was accepted" % env)
            assert c.proc.wait(10) == 2
        finally:
            c.cleanup()


def test_otel_variables_ignored_with_telemetry_off(start_chcp):
    """Set host-wide for other programs, they must not stop a daemon that
    does not export."""
    chcp = start_chcp(otel={"UNKEY_CHCP_OTEL_ENABLED": "false", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                            "OTEL_EXPORTER_OTLP_HEADERS": "broken"}, prometheus=False)
    assert chcp.call("ListVms", {})[0] == "ok"
