"""The wire, byte by byte, with python's http.client, raw sockets and curl:
status codes and headers a Connect server must produce for bad requests."""

import json
import subprocess

import pytest

from harness import connect_error, raw_status

SVC = "/cloudhypervisor.v1.VmService/"
JSON = {"content-type": "application/json"}


def test_unknown_paths_404(daemon):
    for method, path in (("GET", "/"), ("GET", "/nope"), ("POST", "/x.Y/Z"),
                         ("POST", SVC + "NoSuchMethod"), ("POST", "/cloudhypervisor.v1.Other/GetVmInfo")):
        status, _, _ = daemon.http(method, path, body=b"{}" if method == "POST" else None, headers=JSON)
        assert status == 404, (method, path, status)


def allow_set(headers):
    return {m.strip() for m in headers.get("allow", "").split(",") if m.strip()}


def test_wrong_http_method_405_with_allow(daemon):
    # CreateVm has side effects: POST only.
    status, headers, _ = daemon.http("GET", SVC + "CreateVm?encoding=json&message=%7B%7D")
    assert status == 405
    assert allow_set(headers) == {"POST"}
    # GetVmInfo is NO_SIDE_EFFECTS: Connect GET is allowed too.
    status, headers, _ = daemon.http("PUT", SVC + "GetVmInfo", body=b"{}", headers=JSON)
    assert status == 405
    assert allow_set(headers) == {"GET", "POST"}


def test_unsupported_content_type_415(daemon):
    status, headers, _ = daemon.http("POST", SVC + "GetVmInfo", body=b"{}",
                                     headers={"content-type": "text/plain"})
    assert status == 415
    accepted = {t.strip() for t in headers.get("accept-post", "").split(",")}
    assert {"application/json", "application/proto"} <= accepted, headers


def expect_connect_code(status, body, code):
    """Connect unary error: HTTP status per the protocol's table, JSON body."""
    http_for = {"invalid_argument": 400, "unimplemented": 501, "resource_exhausted": 429,
                "not_found": 404, "internal": 500, "permission_denied": 403}
    assert status == http_for[code], (status, body)
    got, _ = connect_error(body)
    assert got == code, body


def test_json_post_error_body(daemon):
    status, headers, body = daemon.http("POST", SVC + "GetVmInfo", body=b'{"vmId":"nope"}', headers=JSON)
    assert headers["content-type"] == "application/json"
    expect_connect_code(status, body, "not_found")


def test_json_post_success(daemon):
    status, headers, body = daemon.http("POST", SVC + "ListVms", body=b"{}", headers=JSON)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {}  # no VMs: every field at its default, omitted


def test_connect_get_idempotent_method(daemon):
    # GetVmInfo and ListVms are NO_SIDE_EFFECTS: Connect GET works.
    status, _, body = daemon.http("GET", SVC + "GetVmInfo?encoding=json&message=%7B%22vmId%22%3A%22x%22%7D")
    expect_connect_code(status, body, "not_found")
    status, _, body = daemon.http("GET", SVC + "ListVms?encoding=json&message=%7B%7D")
    assert (status, json.loads(body)) == (200, {})
    # base64-encoded binary message (empty ListVmsRequest).
    status, headers, body = daemon.http("GET", SVC + "ListVms?encoding=proto&base64=1&message=")
    assert status == 200 and headers["content-type"] == "application/proto" and body == b""


@pytest.mark.parametrize("body", [b"{not json", b'{"vmId": 5}', b"[]", b'{"vmId":"x"', b"\xff\xfe"])
def test_bad_json_invalid_argument(daemon, body):
    status, _, resp = daemon.http("POST", SVC + "GetVmInfo", body=body, headers=JSON)
    expect_connect_code(status, resp, "invalid_argument")


def test_bad_binary_invalid_argument(daemon):
    status, _, resp = daemon.http("POST", SVC + "GetVmInfo", body=b"\x0a\xff\xff",
                                  headers={"content-type": "application/proto"})
    expect_connect_code(status, resp, "invalid_argument")


def test_oversized_body_resource_exhausted(start_daemon):
    d = start_daemon(env={"CHCP_MAX_BODY_BYTES": "1024"})
    big = json.dumps({"vmId": "x" * 4096}).encode()
    status, _, resp = d.http("POST", SVC + "GetVmInfo", body=big, headers=JSON)
    expect_connect_code(status, resp, "resource_exhausted")
    # A body just under the limit is decoded normally.
    small = json.dumps({"vmId": "y" * 900}).encode()
    status, _, resp = d.http("POST", SVC + "GetVmInfo", body=small, headers=JSON)
    assert connect_error(resp)[0] != "resource_exhausted"
    assert d.http("GET", "/health")[0] == 200


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    b"POST " + SVC.encode() + b"GetVmInfo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"\x00\x01\x02\x03\r\n\r\n",
])
def test_malformed_http_400(daemon, data):
    resp = daemon.raw(data)
    assert raw_status(resp) == 400, resp[:200]
    assert daemon.http("GET", "/health")[0] == 200


def test_bad_json_over_h2c(daemon):
    r = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-H", "content-type: application/json",
         "--data-binary", "{oops", "-w", "\\n%{http_code}", daemon.base_url + SVC + "GetVmInfo"],
        capture_output=True, text=True, timeout=20, check=True)
    body, _, code = r.stdout.rpartition("\n")
    assert code == "400"
    assert json.loads(body)["code"] == "invalid_argument"
