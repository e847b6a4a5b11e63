"""Traces, asserted through Jaeger's query API: one SERVER span per RPC for
Connect, gRPC and gRPC-Web (names, rpc.* attributes, status), W3C traceparent
honoured (the caller's span is the parent), a malformed one starting a new
trace, VMM CLIENT spans and INTERNAL phase spans under the RPC span, VMM
events as span events, and the resource (service.name/version/instance,
host.name)."""

import socket

from chcp import SERVICE, buf_curl, new_span_id, new_trace_id, traceparent
from peers import parent_id, process_of, spans_named, tags

# Connect codes whose server span status is ERROR (the rest are the caller's fault).
SERVER_ERROR_CODES = {"unknown", "deadline_exceeded", "unimplemented", "internal", "unavailable",
                      "data_loss"}
GRPC_CODES = {"ok": 0, "not_found": 5}


def otel(jaeger, **extra):
    env = {"UNKEY_CHCP_OTEL_ENDPOINT": jaeger.otlp_endpoint}
    env.update(extra)
    return env


def server_span(trace, method):
    spans = spans_named(trace, "%s/%s" % (SERVICE, method))
    assert len(spans) == 1, "want one server span for %s, trace has: %s" % (
        method, [s["operationName"] for s in trace["spans"]])
    s = spans[0]
    assert tags(s).get("span.kind") == "server", tags(s)
    return s


def is_error(span):
    t = tags(span)
    return t.get("error") is True or t.get("otel.status_code") == "ERROR"


def descends_from(trace, span, ancestor_id):
    by_id = {s["spanID"]: s for s in trace["spans"]}
    seen = 0
    cur = span
    while cur is not None and seen < 64:
        p = parent_id(cur)
        if p == ancestor_id:
            return True
        cur = by_id.get(p)
        seen += 1
    return False


def test_server_span_per_protocol_with_traceparent(jaeger, start_chcp, schema_image):
    chcp = start_chcp(otel=otel(jaeger))
    cases = [
        # (protocol, http2, method, request, expected code)
        ("connect", False, "ListVms", {}, "ok"),
        ("grpc", True, "ListVms", {}, "ok"),
        ("grpcweb", False, "ListVms", {}, "ok"),
        ("connect", False, "GetVmInfo", {"vmId": "no-such-vm"}, "not_found"),
        ("grpc", True, "GetVmInfo", {"vmId": "no-such-vm"}, "not_found"),
        ("grpcweb", True, "GetVmInfo", {"vmId": "no-such-vm"}, "not_found"),
    ]
    sent = []
    for protocol, h2, method, req, want in cases:
        tid, sid = new_trace_id(), new_span_id()
        code, detail = buf_curl(chcp, schema_image, method, req, protocol=protocol, http2=h2,
                                headers={"traceparent": traceparent(tid, sid)})
        assert code == want, (protocol, method, code, detail)
        sent.append((protocol, method, want, tid, sid))

    for protocol, method, want, tid, sid in sent:
        trace = jaeger.wait_trace(tid)
        span = server_span(trace, method)
        assert span["traceID"] == tid
        assert parent_id(span) == sid, "server span must be the child of the caller's span"
        t = tags(span)
        system = {"connect": "connect_rpc", "grpc": "grpc", "grpcweb": "grpc_web"}[protocol]
        assert t["rpc.system"] == system, t
        assert t["rpc.service"] == SERVICE, t
        assert t["rpc.method"] == method, t
        if protocol == "connect":
            if want == "ok":
                assert "rpc.connect_rpc.error_code" not in t, t
            else:
                assert t["rpc.connect_rpc.error_code"] == want, t
        else:
            assert t["rpc.grpc.status_code"] == GRPC_CODES[want], t
        # not_found is the caller's fault: status stays UNSET.
        assert not is_error(span), t


def test_root_span_and_resource(jaeger, start_chcp, schema_image):
    chcp = start_chcp(otel=otel(jaeger))
    code, _ = buf_curl(chcp, schema_image, "ListVms", {})
    assert code == "ok"
    traces = jaeger.wait_traces(chcp.service_name, 1)
    assert len(traces) == 1, [t["traceID"] for t in traces]
    trace = traces[0]
    span = server_span(trace, "ListVms")
    assert parent_id(span) is None, "no traceparent: the server span is a root"
    assert span["duration"] > 0
    proc = process_of(trace, span)
    assert proc["serviceName"] == chcp.service_name
    pt = tags(proc)
    assert pt["service.version"] == "9.8.7-o11y", pt
    assert len(pt["service.instance.id"]) >= 8, pt
    assert pt["host.name"] == socket.gethostname(), pt
    assert chcp.service_name in jaeger.services()


def test_malformed_traceparent_starts_new_trace(jaeger, start_chcp):
    chcp = start_chcp(otel=otel(jaeger))
    tid, sid = new_trace_id(), new_span_id()
    bad = [
        "00-%s-%s-01" % (tid.upper(), sid),                # uppercase hex
        "ff-%s-%s-01" % (tid, sid),                        # version ff is invalid
        "00-%s-%s-01" % ("0" * 32, sid),                   # all-zero trace id
        "00-%s-%s-01" % (tid, "0" * 16),                   # all-zero parent id
        "00-%s-%s-01" % (tid[:-1], sid),                   # short
        "00-%s-%s-01-extra" % (tid, sid),                  # version 00 must be exactly 55 chars
        "00-%sxz-%s-01" % (tid[:-2], sid),                 # not hex
        "00_%s_%s_01" % (tid, sid),                        # wrong separators
        "",                                                # empty
    ]
    for header in bad:
        code, doc = chcp.call("ListVms", {}, headers={"traceparent": header})
        assert code == "ok", (header, code, doc)
    traces = jaeger.wait_traces(chcp.service_name, len(bad))
    assert len(traces) == len(bad)
    for trace in traces:
        span = server_span(trace, "ListVms")
        assert span["traceID"] != tid, "a malformed traceparent must not be honoured"
        assert parent_id(span) is None, "a malformed traceparent must start a new (root) trace"
    assert len({t["traceID"] for t in traces}) == len(bad)
    assert chcp.proc.poll() is None


def _lifecycle_call(chcp, method, request):
    tid, sid = new_trace_id(), new_span_id()
    code, doc = chcp.call(method, request, headers={"traceparent": traceparent(tid, sid)}, timeout=30)
    return code, doc, tid, sid


def _check_vmm_children(trace, rpc_span, phases, client_names):
    names = [s["operationName"] for s in trace["spans"]]
    for phase in phases:
        got = spans_named(trace, phase)
        assert got, "phase span %s missing in %s" % (phase, names)
        for s in got:
            assert tags(s).get("span.kind") == "internal", tags(s)
            assert s["traceID"] == rpc_span["traceID"]
            assert descends_from(trace, s, rpc_span["spanID"]), "%s not under the RPC span" % phase
    for cname in client_names:
        got = spans_named(trace, cname)
        assert got, "VMM client span %s missing in %s" % (cname, names)
    clients = [s for s in trace["spans"] if s["operationName"].startswith("cloud-hypervisor ")]
    assert clients, "no VMM API call spans in %s" % names
    for s in clients:
        assert tags(s).get("span.kind") == "client", tags(s)
        assert descends_from(trace, s, rpc_span["spanID"]), s["operationName"]


def test_vm_lifecycle_spans(jaeger, start_chcp):
    chcp = start_chcp(otel=otel(jaeger))
    vm = "o11y-vm-1"
    steps = [
        ("CreateVm", {"vmId": vm, "config": chcp.vm_config(["standin.boot_delay_ms=50"])},
         ["vm.spawn", "vm.create"], ["cloud-hypervisor vm.create"]),
        ("BootVm", {"vmId": vm}, ["vm.boot"], ["cloud-hypervisor vm.boot"]),
        ("ShutdownVm", {"vmId": vm, "force": True}, ["vm.shutdown"], []),
        ("DeleteVm", {"vmId": vm}, ["vm.delete"], []),
    ]
    done = []
    for method, req, phases, clients in steps:
        code, doc, tid, sid = _lifecycle_call(chcp, method, req)
        assert code == "ok", (method, code, doc)
        done.append((method, phases, clients, tid, sid))

    for method, phases, clients, tid, sid in done:
        # Wait for the whole trace: the RPC span plus every expected child.
        want = set(phases) | set(clients) | {"%s/%s" % (SERVICE, method)}
        trace = jaeger.wait_trace(tid, predicate=lambda t: want <= {s["operationName"] for s in t["spans"]})
        rpc = server_span(trace, method)
        assert parent_id(rpc) == sid
        _check_vmm_children(trace, rpc, phases, clients)
        if method == "BootVm":
            # VMM events (vm/booting, vm/booted) become span events.
            # (Jaeger shows an event's name and attributes as log fields.)
            events = [{f["key"]: f["value"] for f in log["fields"]} for s in trace["spans"]
                      for log in s.get("logs", [])]
            assert any("boot" in str(v) for e in events for v in e.values()), "no boot event in %s" % events


def test_vmm_failure_is_error_and_exported(jaeger, start_chcp):
    """A CreateVm whose VMM dies on vm.create: the RPC answers a server-side
    code, and the spans (RPC and VMM call) have status ERROR."""
    chcp = start_chcp(otel=otel(jaeger))
    code, doc, tid, sid = _lifecycle_call(
        chcp, "CreateVm", {"vmId": "o11y-crash", "config": chcp.vm_config(["standin.crash_on=create"])})
    assert code in SERVER_ERROR_CODES, (code, doc)
    trace = jaeger.wait_trace(tid, predicate=lambda t: any(
        s["operationName"] == "cloud-hypervisor vm.create" for s in t["spans"]))
    rpc = server_span(trace, "CreateVm")
    t = tags(rpc)
    assert is_error(rpc), t
    assert t["rpc.connect_rpc.error_code"] == code, t
    call = spans_named(trace, "cloud-hypervisor vm.create")[0]
    assert is_error(call), tags(call)


def test_server_and_peer_attributes(jaeger, start_chcp, schema_image):
    """semconv's split: server.address/server.port are the address the
    client called, network.peer.address the client's IP without its port,
    network.peer.port its port (HTTP/1.1 Host and HTTP/2 :authority alike)."""
    chcp = start_chcp(otel=otel(jaeger))
    tid = new_trace_id()
    conn = socket.create_connection(("127.0.0.1", chcp.port), timeout=10)
    try:
        client_port = conn.getsockname()[1]
        body = b"{}"
        conn.sendall(("POST /%s/ListVms HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                      "traceparent: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                      % (SERVICE, chcp.port, traceparent(tid, new_span_id()), len(body))).encode() + body)
        assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        conn.close()
    t = tags(server_span(jaeger.wait_trace(tid), "ListVms"))
    assert t["network.peer.address"] == "127.0.0.1", t
    assert t["network.peer.port"] == client_port, t
    assert t["network.type"] == "ipv4" and t["network.transport"] == "tcp", t
    assert t["server.address"] == "127.0.0.1" and t["server.port"] == chcp.port, t
    assert t["network.protocol.version"] == "1.1", t

    tid = new_trace_id()  # HTTP/2: the authority comes from :authority
    assert buf_curl(chcp, schema_image, "ListVms", {}, protocol="grpc", http2=True,
                    headers={"traceparent": traceparent(tid, new_span_id())})[0] == "ok"
    t = tags(server_span(jaeger.wait_trace(tid), "ListVms"))
    assert t["server.address"] == "127.0.0.1" and t["server.port"] == chcp.port, t
    assert ":" not in t["network.peer.address"] and t["network.peer.port"] > 0, t
    assert t["network.protocol.version"] == "2", t


def test_get_vm_info_has_a_client_span_and_spawn_no_http_status(jaeger, start_chcp):
    chcp = start_chcp(otel=otel(jaeger))
    code, doc, create_tid, _ = _lifecycle_call(chcp, "CreateVm", {"vmId": "info-1", "config": chcp.vm_config()})
    assert code == "ok", doc
    assert chcp.call("BootVm", {"vmId": "info-1"}, timeout=30)[0] == "ok"
    code, doc, tid, sid = _lifecycle_call(chcp, "GetVmInfo", {"vmId": "info-1"})
    assert code == "ok", doc
    trace = jaeger.wait_trace(tid, predicate=lambda t: spans_named(t, "cloud-hypervisor vm.info"))
    rpc = server_span(trace, "GetVmInfo")
    op = spans_named(trace, "vm.info")[0]
    call = spans_named(trace, "cloud-hypervisor vm.info")[0]
    assert parent_id(op) == rpc["spanID"] and parent_id(call) == op["spanID"]
    ct = tags(call)
    assert ct["span.kind"] == "client", ct
    assert ct["http.request.method"] == "GET" and ct["url.path"] == "/api/v1/vm.info", ct
    assert ct["http.response.status_code"] == 200, ct

    create = jaeger.wait_trace(create_tid, predicate=lambda t: spans_named(t, "vm.spawn"))
    spawn = tags(spans_named(create, "vm.spawn")[0])
    assert spawn["span.kind"] == "internal", spawn
    assert "http.response.status_code" not in spawn, "starting a VMM is not an HTTP call: %s" % spawn
    assert tags(spans_named(create, "cloud-hypervisor vm.create")[0])["http.response.status_code"] == 204
    assert chcp.call("DeleteVm", {"vmId": "info-1"}, timeout=30)[0] == "ok"


def test_gzip_export_to_jaeger(jaeger, start_chcp):
    """OTEL_EXPORTER_OTLP_COMPRESSION=gzip: Jaeger's OTLP receiver takes it."""
    chcp = start_chcp(otel=otel(jaeger, OTEL_EXPORTER_OTLP_COMPRESSION="gzip"))
    tid = new_trace_id()
    assert chcp.call("ListVms", {}, headers={"traceparent": traceparent(tid, new_span_id())})[0] == "ok"
    assert server_span(jaeger.wait_trace(tid), "ListVms")["traceID"] == tid
