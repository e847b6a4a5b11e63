"""test_grpc_services.py - gRPC server reflection and health, through the
tools operators use: grpcurl (list, describe, a call with nothing but
reflection), `buf curl --reflect`, and grpc_health_probe (the probe
Kubernetes documents), plus a Watch that follows readiness as it changes.

grpcurl and grpc_health_probe are Go programs installed pinned by
`make install-tools` (scripts/deps.sh) into .tools/bin.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from harness import REPO, assert_no_sanitizer_reports, standin_bin

TOOLS = os.path.join(REPO, ".tools", "bin")


def tool(name):
    path = os.path.join(TOOLS, name)
    if not os.access(path, os.X_OK):
        pytest.fail("%s missing: run `make install-tools`" % path)
    return path


def grpcurl(d, *args, flags=(), timeout=30):
    """grpcurl [flags] address args..."""
    return subprocess.run([tool("grpcurl"), "-plaintext"] + list(flags) +
                          ["127.0.0.1:%d" % d.port] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def test_grpcurl_list(daemon):
    r = grpcurl(daemon, "list")
    assert r.returncode == 0, r.stderr
    services = r.stdout.split()
    for s in ("cloudhypervisor.v1.VmService", "grpc.health.v1.Health",
              "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"):
        assert s in services, r.stdout
    r = grpcurl(daemon, "list", "cloudhypervisor.v1.VmService")
    assert r.returncode == 0, r.stderr
    assert "cloudhypervisor.v1.VmService.CreateVm" in r.stdout.split()
    assert "cloudhypervisor.v1.VmService.ListVms" in r.stdout.split()


def test_grpcurl_describe(daemon):
    r = grpcurl(daemon, "describe", "cloudhypervisor.v1.VmService")
    assert r.returncode == 0, r.stderr
    assert "rpc CreateVm ( .cloudhypervisor.v1.CreateVmRequest ) returns" in r.stdout
    r = grpcurl(daemon, "describe", "cloudhypervisor.v1.VmInfo")
    assert r.returncode == 0, r.stderr
    assert "message VmInfo {" in r.stdout
    # A message from an imported file resolves too (the imports were sent).
    r = grpcurl(daemon, "describe", "google.protobuf.Timestamp")
    assert r.returncode == 0, r.stderr
    assert "int64 seconds = 1;" in r.stdout
    r = grpcurl(daemon, "describe", "no.such.Thing")
    assert r.returncode != 0
    assert "not found" in r.stderr.lower()


def test_grpcurl_call_through_reflection(daemon):
    r = grpcurl(daemon, "cloudhypervisor.v1.VmService/ListVms", flags=["-d", "{}"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout or "{}") == {}


def test_buf_curl_reflect(buf, daemon):
    url = "http://127.0.0.1:%d" % daemon.port
    for proto, extra in (("grpc", ["--http2-prior-knowledge"]), ("connect", [])):
        r = subprocess.run([buf, "curl", "--reflect", "--protocol", proto] + extra +
                           ["--data", "{}", url + "/cloudhypervisor.v1.VmService/ListVms"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {}
    r = subprocess.run([buf, "curl", "--reflect", "--http2-prior-knowledge", "--protocol", "grpc",
                        "--list-methods", url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cloudhypervisor.v1.VmService/GetVmInfo" in r.stdout.split()


def probe(d, *args):
    return subprocess.run([tool("grpc-health-probe"), "-addr", "127.0.0.1:%d" % d.port] +
                          list(args), capture_output=True, text=True, timeout=30)


def test_health_probe(daemon):
    r = probe(daemon)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SERVING" in r.stdout + r.stderr
    r = probe(daemon, "-service", "cloudhypervisor.v1.VmService")
    assert r.returncode == 0, r.stdout + r.stderr
    r = probe(daemon, "-service", "grpc.health.v1.Health")
    assert r.returncode == 0, r.stdout + r.stderr
    # An unknown service is an error (NOT_FOUND), not a status.
    r = probe(daemon, "-service", "no.such.Service")
    assert r.returncode not in (0, 4), r.stdout + r.stderr
    assert "NotFound" in r.stdout + r.stderr or "NOT_FOUND" in r.stdout + r.stderr


def test_health_follows_readiness(start_daemon, tmp_path):
    """Readiness depends on the VMM binary being executable, checked on every
    probe: take it away and the probe says NOT_SERVING (exit 4), a Watch
    hears it, and both recover when it is back. At shutdown the Watch hears
    NOT_SERVING and its stream ends, so the drain is not held up."""
    vmm = str(tmp_path / "cloud-hypervisor")
    shutil.copy(standin_bin(), vmm)
    os.chmod(vmm, 0o755)
    d = start_daemon(env={"CHCP_CH_BINARY": vmm, "CHCP_SHUTDOWN_TIMEOUT_MS": "60000"})
    watch = subprocess.Popen([tool("grpcurl"), "-plaintext", "-d", '{"service": ""}',
                              "127.0.0.1:%d" % d.port, "grpc.health.v1.Health/Watch"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        statuses = []

        def next_status(timeout=10):
            # grpcurl prints each message as a small JSON object.
            deadline = time.monotonic() + timeout
            text = ""
            while time.monotonic() < deadline:
                line = watch.stdout.readline()
                if not line:
                    break
                text += line
                if line.strip() == "}":
                    statuses.append(json.loads(text)["status"])
                    return statuses[-1]
            raise AssertionError("no status from Watch; got %r %r" % (text, statuses))

        assert next_status() == "SERVING"
        os.chmod(vmm, 0o644)
        assert probe(d).returncode == 4
        assert next_status() == "NOT_SERVING"
        os.chmod(vmm, 0o755)
        assert probe(d).returncode == 0
        assert next_status() == "SERVING"
        d.signal(signal.SIGTERM)
        assert next_status() == "NOT_SERVING"
        assert watch.wait(timeout=10) == 0
        assert d.wait() == 0
        d.exit_checked = True
        out = d.output()
        assert_no_sanitizer_reports(out)
        # Drained, not timed out with the Watch still open.
        assert "shutdown timeout" not in out, out[-4000:]
    finally:
        if watch.poll() is None:
            watch.kill()
