"""VmService through connect-es (@connectrpc/connect-node v2): a VM's whole
life (vm_calls.calls) with JSON and binary codecs, over Connect, gRPC and
gRPC-Web, HTTP/1.1 and HTTP/2, TCP and the Unix socket."""

import json
import os
import shutil
import subprocess

import pytest

from harness import INTEGRATION_DIR
from vm_calls import calls, check

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


def run_client(schema_image, daemon, protocol, http_version, binary, unix, steps):
    node = shutil.which("node")
    assert node, "node not found"
    spec = {
        "image": schema_image,
        "baseUrl": "http://localhost" if unix else daemon.base_url,
        "protocol": protocol,
        "httpVersion": http_version,
        "binary": binary,
        "calls": [{"method": m, "request": r} for m, r, _ in steps],
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
def test_vm_lifecycle(schema_image, vm_daemon, protocol, http_version, binary, unix):
    steps = calls(vm_daemon.kernel)
    results = run_client(schema_image, vm_daemon, protocol, http_version, binary, unix, steps)
    assert len(results) == len(steps)
    where = "%s/h%s/%s%s" % (protocol, http_version, "binary" if binary else "json",
                             "/unix" if unix else "")
    for (method, _, expect), res in zip(steps, results):
        if res["ok"]:
            check(method, expect, "ok", res["response"], where)
        else:
            check(method, expect, res["code"], res["message"], where)
    assert vm_daemon.proc.poll() is None
