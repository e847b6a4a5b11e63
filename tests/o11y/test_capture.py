"""Which traces are captured whatever the sampler says, and with what span
status, asserted through Jaeger's query API:

- at sampling rate 0, every RPC that did not end OK is exported, also for the
  caller-side codes (not_found, invalid_argument, already_exists,
  permission_denied, failed_precondition), while successes are not;
- span status follows the RPC semantic conventions all the same: UNSET for a
  caller's mistake, ERROR for the server's fault, and the INTERNAL operation
  span under the SERVER span agrees with it;
- the captured set is configurable (UNKEY_CHCP_OTEL_CAPTURE_CODES);
- rpc.grpc.status_code only on gRPC spans, rpc.connect_rpc.error_code only on
  failed Connect spans, error.type on every failed one."""

from chcp import SERVICE, buf_curl, new_span_id, new_trace_id, traceparent
from peers import parent_id, spans_named, tags
from test_sampling import marker
from test_traces import SERVER_ERROR_CODES, is_error, otel


def rpc_span(trace, method):
    spans = spans_named(trace, "%s/%s" % (SERVICE, method))
    assert len(spans) == 1, [s["operationName"] for s in trace["spans"]]
    return spans[0]


def caller_mistakes(chcp):
    """One call per caller-side code: [(method, request, expected code)]."""
    return [
        ("GetVmInfo", {"vmId": "no-such-vm"}, "not_found"),
        ("CreateVm", {"vmId": "Bad Id!", "config": chcp.vm_config()}, "invalid_argument"),
        ("CreateVm", {"vmId": "cap-1", "config": dict(chcp.vm_config(), cpus={"bootVcpus": 1,
                                                                              "maxVcpus": 2})},
         "already_exists"),
        ("CreateVm", {"vmId": "cap-2", "config": dict(chcp.vm_config(),
                                                      payload={"kernel": "/etc/hostname"})},
         "permission_denied"),
        ("PauseVm", {"vmId": "cap-1"}, "failed_precondition"),
    ]


def traces_of(jaeger, chcp, method):
    name = "%s/%s" % (SERVICE, method)
    return [t for t in jaeger.traces(chcp.service_name) if spans_named(t, name)]


def test_rate_zero_captures_every_failed_call(jaeger, start_chcp):
    chcp = start_chcp(otel=otel(jaeger, UNKEY_CHCP_OTEL_SAMPLING_RATE="0"))
    # cap-1 exists (CREATED), so a second CreateVm with another config is
    # already_exists and PauseVm is failed_precondition.
    assert chcp.call("CreateVm", {"vmId": "cap-1", "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    for _ in range(5):
        assert chcp.call("ListVms", {})[0] == "ok"
    calls = caller_mistakes(chcp)
    for method, req, want in calls:
        code, doc = chcp.call(method, req, timeout=30)
        assert code == want, (method, code, doc)
    marker(chcp, jaeger)

    by_code = {}
    for t in jaeger.traces(chcp.service_name):
        for method, _, want in calls:
            for s in spans_named(t, "%s/%s" % (SERVICE, method)):
                # (The marker is a not_found too, but with a sampled parent.)
                if tags(s).get("rpc.connect_rpc.error_code") == want and parent_id(s) is None:
                    by_code[want] = (t, s)
    assert set(by_code) == {w for _, _, w in calls}, "captured: %s" % sorted(by_code)
    for want, (trace, span) in by_code.items():
        t = tags(span)
        assert parent_id(span) is None
        assert not is_error(span), "%s is the caller's fault: status must stay UNSET (%s)" % (want, t)
        assert t["error.type"] == want, t
        assert "rpc.grpc.status_code" not in t, "a Connect span carries no gRPC status: %s" % t
    # The successful calls were not sampled, so not exported.
    assert traces_of(jaeger, chcp, "ListVms") == []
    assert [t for t in traces_of(jaeger, chcp, "CreateVm")
            if "rpc.connect_rpc.error_code" not in tags(rpc_span(t, "CreateVm"))] == []


def test_server_span_and_operation_span_agree(jaeger, start_chcp):
    """failed_precondition: both UNSET; a VMM crash: both ERROR."""
    chcp = start_chcp(otel=otel(jaeger))
    assert chcp.call("CreateVm", {"vmId": "agree", "config": chcp.vm_config()}, timeout=30)[0] == "ok"
    tid = new_trace_id()
    code, _ = chcp.call("PauseVm", {"vmId": "agree"}, headers={"traceparent": traceparent(tid, new_span_id())})
    assert code == "failed_precondition"
    trace = jaeger.wait_trace(tid, predicate=lambda t: spans_named(t, "vm.pause"))
    server, op = rpc_span(trace, "PauseVm"), spans_named(trace, "vm.pause")[0]
    assert parent_id(op) == server["spanID"]
    assert not is_error(server) and not is_error(op), (tags(server), tags(op))
    assert tags(op)["error.type"] == "failed_precondition"

    tid = new_trace_id()
    code, _ = chcp.call("CreateVm", {"vmId": "agree-crash", "config": chcp.vm_config(["standin.crash_on=create"])},
                        headers={"traceparent": traceparent(tid, new_span_id())}, timeout=30)
    assert code in SERVER_ERROR_CODES, code
    trace = jaeger.wait_trace(tid, predicate=lambda t: spans_named(t, "vm.create") and spans_named(
        t, "cloud-hypervisor vm.create"))
    server, op = rpc_span(trace, "CreateVm"), spans_named(trace, "vm.create")[0]
    assert is_error(server) and is_error(op), (tags(server), tags(op))
    assert tags(server)["error.type"] == tags(op)["error.type"] == code


def test_grpc_status_code_only_on_grpc(jaeger, start_chcp, schema_image):
    chcp = start_chcp(otel=otel(jaeger))
    ids = {}
    for protocol, h2 in (("grpc", True), ("grpcweb", False), ("connect", False)):
        tid = new_trace_id()
        code, _ = buf_curl(chcp, schema_image, "ListVms", {}, protocol=protocol, http2=h2,
                           headers={"traceparent": traceparent(tid, new_span_id())})
        assert code == "ok"
        ids[protocol] = tid
    for protocol, tid in ids.items():
        t = tags(rpc_span(jaeger.wait_trace(tid), "ListVms"))
        if protocol == "connect":
            assert "rpc.grpc.status_code" not in t and "rpc.connect_rpc.error_code" not in t, t
            assert "error.type" not in t, t
        else:
            assert t["rpc.grpc.status_code"] == 0, t


def _run_mix(chcp):
    """A not_found and a VMM crash (unavailable/internal) at rate 0."""
    assert chcp.call("GetVmInfo", {"vmId": "nope"})[0] == "not_found"
    code, _ = chcp.call("CreateVm", {"vmId": "mix", "config": chcp.vm_config(["standin.crash_on=create"])},
                        timeout=30)
    assert code in SERVER_ERROR_CODES, code
    return code


def test_capture_codes_server_only(jaeger, start_chcp):
    chcp = start_chcp(otel=otel(jaeger, UNKEY_CHCP_OTEL_SAMPLING_RATE="0",
                                UNKEY_CHCP_OTEL_CAPTURE_CODES="server"))
    _run_mix(chcp)
    marker(chcp, jaeger)
    assert traces_of(jaeger, chcp, "CreateVm"), "a server-side failure must be captured"
    # Only the marker's GetVmInfo (a sampled parent) is there, not the not_found.
    infos = traces_of(jaeger, chcp, "GetVmInfo")
    assert len(infos) == 1 and tags(rpc_span(infos[0], "GetVmInfo"))["rpc.connect_rpc.error_code"] == "not_found"
    assert parent_id(rpc_span(infos[0], "GetVmInfo")) is not None, "only the marker (with a parent)"


def test_capture_codes_list_and_none(jaeger, start_chcp):
    chcp = start_chcp(otel=otel(jaeger, UNKEY_CHCP_OTEL_SAMPLING_RATE="0",
                                UNKEY_CHCP_OTEL_CAPTURE_CODES="not_found"))
    _run_mix(chcp)
    marker(chcp, jaeger)
    assert len(traces_of(jaeger, chcp, "GetVmInfo")) == 2  # the not_found and the marker
    assert traces_of(jaeger, chcp, "CreateVm") == [], "internal/unavailable is not in the set"

    # "none": head sampling only, even a failing VMM is not exported.
    other = start_chcp(otel=otel(jaeger, UNKEY_CHCP_OTEL_SAMPLING_RATE="0",
                                 UNKEY_CHCP_OTEL_CAPTURE_CODES="none"))
    _run_mix(other)
    marker(other, jaeger)
    assert traces_of(jaeger, other, "CreateVm") == []
    assert len(traces_of(jaeger, other, "GetVmInfo")) == 1  # the marker only
