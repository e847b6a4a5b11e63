"""VmService through connect-es (@connectrpc/connect-node v2): JSON and
binary codecs, Connect / gRPC / gRPC-Web, HTTP/1.1 and HTTP/2, TCP and Unix
socket; outcomes must match vm_calls.EXPECTED."""

import json
import os
import shutil
import subprocess

import pytest

from harness import INTEGRATION_DIR
from vm_calls import CALLS, EXPECTED

# (protocol, httpVersion, binary, unix)
MATRIX = [
    ("connect", "1.1", False, False),
    ("connect", "1.1", True, False),
    ("connect", "2", False, False),
    ("connect", "2", True, False),
    ("connect", "1.1", False, True),
    ("connect", "2", True, True),
    ("grpcweb", "1.1", True, False),
    ("grpcweb", "2", False, False),
    ("grpc", "2", True, False),
    ("grpc", "2", True, True),
]


def run_client(schema_image, daemon, protocol, http_version, binary, unix, calls):
    node = shutil.which("node")
    assert node, "node not found"
    spec = {
        "image": schema_image,
        "baseUrl": "http://localhost" if unix else daemon.base_url,
        "protocol": protocol,
        "httpVersion": http_version,
        "binary": binary,
        "calls": [{"method": m, "request": r} for m, r in calls],
    }
    if unix:
        spec["unixSocket"] = daemon.unix_socket
    r = subprocess.run([node, os.path.join(INTEGRATION_DIR, "client.mjs"), json.dumps(spec)],
                       capture_output=True, text=True, timeout=120, cwd=INTEGRATION_DIR)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize(
    "protocol,http_version,binary,unix", MATRIX,
    ids=["%s-h%s-%s%s" % (p, v, "binary" if b else "json", "-unix" if u else "")
         for p, v, b, u in MATRIX])
def test_vm_service_methods(schema_image, daemon, protocol, http_version, binary, unix):
    results = run_client(schema_image, daemon, protocol, http_version, binary, unix, CALLS)
    assert len(results) == len(CALLS)
    for (method, _), res in zip(CALLS, results):
        want = EXPECTED[method]
        if want is None:
            assert res["ok"], (method, res)
        else:
            assert not res["ok"] and res["code"] == want, (method, protocol, http_version, res)
    assert daemon.proc.poll() is None
