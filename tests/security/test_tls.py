"""TLS on the API port (src/transport/tls.c): h2 and http/1.1 by ALPN with
curl, buf curl (connect-go and grpc-go) and chcpctl; TLS versions; mutual
TLS refusing clients without a certificate, from another CA, or expired;
no h2c upgrade over TLS; a stalled handshake bounded by the header timeout;
certificate reload on SIGHUP while an established connection keeps working."""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import REPO, base_env, wait_for
from seclib import API, client_context, h1_exchange, log_lines, tls_connect

SERVICE = "cloudhypervisor.v1.VmService"


def curl(d, method, body, *args, cert="client"):
    argv = ["curl", "-sS", "--max-time", "20", "--cacert", d.pki.crt("ca"), "-o", "-",
            "-w", "\n%{http_code} %{http_version}", "-H", "content-type: application/json",
            "-d", json.dumps(body)]
    if cert:
        argv += ["--cert", d.pki.crt(cert), "--key", d.pki.key(cert)]
    r = subprocess.run(argv + list(args) + ["https://localhost:%d%s%s" % (d.port, API, method)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text, _, tail = r.stdout.rpartition("\n")
    code, version = tail.split()
    return int(code), version, json.loads(text or "{}")


def test_curl_h2_and_http11(start_tls):
    d = start_tls()
    assert d.startup["tls"] == "mutual"
    assert curl(d, "ListVms", {}, "--http2") == (200, "2", {})
    assert curl(d, "ListVms", {}, "--http1.1") == (200, "1.1", {})
    # Connect GET over h2 as well: one request abstraction whatever carried it.
    r = subprocess.run(["curl", "-sS", "--http2", "--cacert", d.pki.crt("ca"), "--cert",
                        d.pki.crt("client"), "--key", d.pki.key("client"),
                        "https://localhost:%d%sListVms?encoding=json&message=%%7B%%7D"
                        % (d.port, API)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "{}", r.stdout + r.stderr


def test_alpn_decides_the_protocol(start_tls, pki):
    d = start_tls()
    with tls_connect(d.port, pki, "client", alpn=["h2", "http/1.1"]) as s:
        assert s.selected_alpn_protocol() == "h2"
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        frame = s.recv(9)
        assert frame[3] == 0x04, "the server's first frame is SETTINGS: %r" % frame
    with tls_connect(d.port, pki, "client", alpn=["http/1.1"]) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        assert h1_exchange(s, API + "ListVms")[0] == 200
    # No ALPN (openssl s_client style): the preface decides, as in clear text.
    with tls_connect(d.port, pki, "client") as s:
        assert s.selected_alpn_protocol() is None
        assert h1_exchange(s, API + "ListVms")[0] == 200
        # Keep-alive: a second request on the same TLS connection.
        assert h1_exchange(s, API + "ListVms")[0] == 200
    # A client that offers only protocols we do not speak is not refused by
    # ALPN; what it sends next is judged like anything else.
    with tls_connect(d.port, pki, "client", alpn=["spdy/3"]) as s:
        assert s.selected_alpn_protocol() is None


def test_no_h2c_upgrade_over_tls(start_tls, pki):
    d = start_tls()
    with tls_connect(d.port, pki, "client", alpn=["http/1.1"]) as s:
        status, headers, _ = h1_exchange(
            s, API + "ListVms?encoding=json&message=%7B%7D", b"",
            {"connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c",
             "http2-settings": "AAMAAABkAAQAoAAAAAIAAAAA"}, method="GET")
    assert status == 200 and "upgrade" not in headers


@pytest.mark.parametrize("protocol", ["grpc", "connect", "grpcweb"])
def test_buf_curl_over_tls(start_tls, buf, schema_image, protocol):
    """connect-go (buf curl) negotiates h2 by ALPN; gRPC needs it."""
    d = start_tls(vmm=True)
    args = [buf, "curl", "--schema", schema_image, "--protocol", protocol, "--cacert",
            d.pki.crt("ca"), "--cert", d.pki.crt("client"), "--key", d.pki.key("client")]
    url = "https://localhost:%d/%s/" % (d.port, SERVICE)
    create = {"vm_id": "tls-1", "config": {"payload": {"kernel": d.kernel}}}
    r = subprocess.run(args + ["--data", json.dumps(create), url + "CreateVm"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["vm"]["vmId"] == "tls-1"
    r = subprocess.run(args + ["--data", "{}", url + "ListVms"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and [v["vmId"] for v in json.loads(r.stdout)["vms"]] == ["tls-1"]
    # Without a client certificate the handshake fails (what Go reports
    # varies by protocol; the daemon's log says why).
    r = subprocess.run([buf, "curl", "--schema", schema_image, "--protocol", protocol,
                        "--cacert", d.pki.crt("ca"), "--data", "{}", url + "ListVms"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and '"code"' not in r.stdout, r.stdout
    assert wait_for(lambda: any("peer did not return a certificate" in rec["msg"]
                                for rec in log_lines(d, "TLS handshake")), 5)
    # The principal is the client's SPIFFE ID, in the audit line.
    assert any(rec.get("principal") == "spiffe://example.org/deployer"
               for rec in log_lines(d, "CreateVm requested"))


def test_chcpctl_over_tls(start_tls, pki):
    ctl = os.environ.get("CHCPCTL_BIN", os.path.join(REPO, "build", "asan", "chcpctl"))
    if not os.access(ctl, os.X_OK):
        pytest.fail("chcpctl missing at %s (make security-test builds it)" % ctl)
    d = start_tls(vmm=True)
    endpoint = "https://localhost:%d" % d.port
    env = base_env({"CHCPCTL_ENDPOINT": endpoint, "CHCPCTL_CACERT": pki.crt("ca")})
    tls = ["--cert", pki.crt("client"), "--key", pki.key("client")]
    r = subprocess.run([ctl] + tls + ["create", "ctl-1", "--kernel", d.kernel, "--label",
                                      "app=web"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([ctl] + tls + ["-o", "json", "get", "ctl-1"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["labels"] == {"app": "web"}, r.stderr
    # No client certificate: refused at the handshake, and chcpctl says why.
    r = subprocess.run([ctl, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "certificate" in r.stderr.lower() or "handshake" in r.stderr.lower(), r.stderr


def refused(port, pki, cert, version=None):
    """The reason a TLS client is refused (handshake or first read)."""
    try:
        with tls_connect(port, pki, cert, alpn=["http/1.1"], version=version) as s:
            h1_exchange(s, API + "ListVms")
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return str(e)
    return None


def test_mutual_tls_refusals(start_tls, pki):
    d = start_tls()
    cases = {
        None: "peer did not return a certificate",
        "stranger": "certificate verify failed (unable to get local issuer certificate)",
        "expired": "certificate verify failed (certificate has expired)",
    }
    for cert, why in cases.items():
        assert refused(d.port, pki, cert) is not None, "%s was let in" % cert
        assert wait_for(lambda: any(why in r["msg"] for r in log_lines(d, "TLS handshake")), 5), (
            "no log line saying '%s'" % why)
    # The refusals cost nothing: a good client is still served.
    assert refused(d.port, pki, "client") is None
    assert d.call("ListVms", {})[0] == 200


def test_tls_versions(start_tls, pki):
    d = start_tls()
    assert refused(d.port, pki, "client", ssl.TLSVersion.TLSv1_2) is None
    assert refused(d.port, pki, "client", ssl.TLSVersion.TLSv1_3) is None
    assert refused(d.port, pki, "client", ssl.TLSVersion.TLSv1_1) is not None
    # Refused by the server, not by the client's own library.
    assert wait_for(lambda: any("unsupported protocol" in r["msg"]
                                for r in log_lines(d, "TLS handshake")), 5), d.output()
    d13 = start_tls(env={"CHCP_TLS_MIN_VERSION": "1.3"})
    assert refused(d13.port, pki, "client", ssl.TLSVersion.TLSv1_2) is not None
    assert refused(d13.port, pki, "client", ssl.TLSVersion.TLSv1_3) is None


def test_clear_text_on_a_tls_port_is_refused(start_tls):
    d = start_tls()
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        s.sendall(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    assert b"HTTP/1.1 200" not in data


def test_stalled_handshake_is_closed(start_tls, pki):
    d = start_tls(env={"CHCP_HEADER_TIMEOUT_MS": "500"})
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, never finished
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - t0 < 5


def peer_cn(port, pki):
    with tls_connect(port, pki, "client") as s:
        subject = dict(x[0] for x in s.getpeercert()["subject"])
        return subject["commonName"]


def test_reload_on_sighup(start_tls, pki, tmp_path):
    """New handshakes get the new certificate; an established connection
    goes on with the old one; a broken pair on reload keeps the old."""
    cert, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    shutil.copy(pki.crt("server"), cert)
    shutil.copy(pki.key("server"), key)
    d = start_tls(env={"CHCP_TLS_CERT": cert, "CHCP_TLS_KEY": key})
    assert peer_cn(d.port, pki) == "localhost"
    old = tls_connect(d.port, pki, "client", alpn=["http/1.1"])
    assert h1_exchange(old, API + "ListVms")[0] == 200
    shutil.copy(pki.crt("server2"), cert)
    shutil.copy(pki.key("server2"), key)
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: log_lines(d, "reload on SIGHUP done"), 10), d.output()
    assert peer_cn(d.port, pki) == "localhost-2"
    assert h1_exchange(old, API + "ListVms")[0] == 200, "the old connection was dropped"
    old.close()
    # A key that does not match: refused, the current pair stays.
    shutil.copy(pki.key("server"), key)
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: log_lines(d, "reload on SIGHUP incomplete"), 10), d.output()
    assert log_lines(d, "keeping the previous TLS certificate")
    assert peer_cn(d.port, pki) == "localhost-2"


def test_bad_certificate_stops_start_with_exit_2(pki, tmp_path):
    from harness import run_binary
    env = {"CHCP_PORT": "0", "CHCP_STATE_DIR": str(tmp_path / "s"),
           "CHCP_TLS_CERT": pki.crt("server"), "CHCP_TLS_KEY": pki.key("client")}
    r = run_binary([], env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "does not match the certificate" in r.stdout + r.stderr
    env["CHCP_TLS_CERT"] = pki.crt("expired")
    env["CHCP_TLS_KEY"] = pki.key("expired")
    r = run_binary([], env=env)
    assert r.returncode == 2 and "expired" in r.stdout + r.stderr, r.stdout + r.stderr
    env.pop("CHCP_TLS_KEY")
    r = run_binary([], env=env)
    assert r.returncode == 2 and "CHCP_TLS_KEY" in r.stderr, r.stderr
