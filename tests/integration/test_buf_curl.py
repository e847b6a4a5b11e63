"""VmService through `buf curl` (connect-go / grpc-go clients): a VM's whole
life (vm_calls.calls), over Connect, gRPC and gRPC-Web, on HTTP/1.1, h2c and
the Unix socket; every answer must be exactly what vm_calls expects."""

import json
import subprocess

import pytest

from vm_calls import calls, check

SERVICE = "cloudhypervisor.v1.VmService"

# (protocol, transport): gRPC needs HTTP/2.
MATRIX = [
    ("connect", "http1"),
    ("connect", "h2c"),
    ("connect", "unix"),
    ("connect", "unix-h2c"),
    ("grpcweb", "http1"),
    ("grpcweb", "h2c"),
    ("grpcweb", "unix"),
    ("grpc", "h2c"),
    ("grpc", "unix-h2c"),
]


def buf_curl(buf, schema, daemon, protocol, transport, method, request):
    args = [buf, "curl", "--schema", schema, "--protocol", protocol, "--data", json.dumps(request)]
    if transport.endswith("h2c"):
        args.append("--http2-prior-knowledge")
    if transport.startswith("unix"):
        args += ["--unix-socket", daemon.unix_socket]
        url = "http://localhost/%s/%s" % (SERVICE, method)
    else:
        url = "%s/%s/%s" % (daemon.base_url, SERVICE, method)
    return subprocess.run(args + [url], capture_output=True, text=True, timeout=60)


def outcome(r):
    """("ok", response) or (code, message) from buf curl's output."""
    if r.returncode == 0:
        return "ok", json.loads(r.stdout or "{}")
    # buf curl prints an RPC error as JSON on stderr.
    text = r.stderr.strip()
    start = text.find("{")
    assert start >= 0, "buf curl failed without an RPC error:\n" + r.stdout + r.stderr
    err = json.loads(text[start:])
    return err["code"], err.get("message", "")


@pytest.mark.parametrize("protocol,transport", MATRIX, ids=["%s-%s" % m for m in MATRIX])
def test_vm_lifecycle(buf, schema_image, vm_daemon, protocol, transport):
    where = "%s/%s" % (protocol, transport)
    for method, request, expect in calls(vm_daemon.kernel):
        code, result = outcome(buf_curl(buf, schema_image, vm_daemon, protocol, transport, method, request))
        check(method, expect, code, result, where)
    assert vm_daemon.proc.poll() is None


def test_unknown_method_is_unimplemented(buf, tmp_path, daemon):
    """A method the server does not have: buf curl with a schema that has it."""
    proto = tmp_path / "extra.proto"
    proto.write_text(
        'syntax = "proto3";\npackage cloudhypervisor.v1;\n'
        "message NoSuchRequest {}\nmessage NoSuchResponse {}\n"
        "service VmService { rpc NoSuchMethod(NoSuchRequest) returns (NoSuchResponse); }\n"
    )
    for protocol, extra in (("connect", []), ("grpc", ["--http2-prior-knowledge"]),
                            ("grpcweb", [])):
        r = subprocess.run(
            [buf, "curl", "--schema", str(proto), "--protocol", protocol, "--data", "{}"] + extra
            + ["%s/%s/NoSuchMethod" % (daemon.base_url, SERVICE)],
            capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
        )
        code, _ = outcome(r)
        assert code == "unimplemented", (protocol, r.stdout, r.stderr)
