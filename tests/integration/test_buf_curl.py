"""VmService through `buf curl` (connect-go / grpc-go clients): every method,
over Connect, gRPC and gRPC-Web, on HTTP/1.1, h2c and the Unix socket; the
outcome must be exactly what vm_calls.EXPECTED says."""

import concurrent.futures
import json
import subprocess

import pytest

from vm_calls import CALLS, EXPECTED

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
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=60)
    return r


def outcome(r):
    """("ok", response) or (code, message) from buf curl's output."""
    if r.returncode == 0:
        return "ok", json.loads(r.stdout or "{}")
    # buf curl prints a Connect error as JSON on stderr.
    text = r.stderr.strip()
    start = text.find("{")
    assert start >= 0, "buf curl failed without an RPC error:\n" + r.stdout + r.stderr
    err = json.loads(text[start:])
    return err["code"], err.get("message", "")


@pytest.mark.parametrize("protocol,transport", MATRIX, ids=["%s-%s" % m for m in MATRIX])
def test_vm_service_methods(buf, schema_image, daemon, protocol, transport):
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            method: pool.submit(buf_curl, buf, schema_image, daemon, protocol, transport, method, req)
            for method, req in CALLS
        }
        results = {m: outcome(f.result()) for m, f in futures.items()}
    for method, _ in CALLS:
        code, detail = results[method]
        want = EXPECTED[method] or "ok"
        assert code == want, "%s over %s/%s: got %s (%s), want %s" % (
            method, protocol, transport, code, detail, want)
    assert daemon.proc.poll() is None


def test_unknown_method_is_unimplemented(buf, tmp_path, daemon):
    """A method the server does not have: buf curl with a schema that has it."""
    proto = tmp_path / "extra.proto"
    proto.write_text(
        'syntax = "proto3";\npackage cloudhypervisor.v1;\n'
        "message NoSuchRequest {}\nmessage NoSuchResponse {}\n"
        "service VmService { rpc NoSuchMethod(NoSuchRequest) returns (NoSuchResponse); }\n"
    )
    for protocol, extra in (("connect", []), ("grpc", ["--http2-prior-knowledge"])):
        r = subprocess.run(
            [buf, "curl", "--schema", str(proto), "--protocol", protocol, "--data", "{}"] + extra
            + ["%s/%s/NoSuchMethod" % (daemon.base_url, SERVICE)],
            capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
        )
        code, _ = outcome(r)
        assert code == "unimplemented", (protocol, r.stdout, r.stderr)
