"""chcpctl over TLS, against a real TLS peer: the daemon does not serve TLS
yet (issue 12), so each test puts a TLS-terminating proxy (Python's ssl
module, OpenSSL underneath) in front of its TCP port, with certificates made
by the openssl command for this run. Checked: the chain is verified against
--cacert (or $CHCPCTL_CACERT), the certificate must name the host dialled
(IP or DNS SAN) or --tls-server-name, and mutual TLS with --cert/--key."""

import os
import select
import socket
import ssl
import subprocess
import threading

import pytest


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost and 127.0.0.1, a client
    certificate, and a second CA that signed nothing we use."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".crt", "-days", "2",
                "-subj", "/CN=chcp test " + ca, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    exts = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, ext in exts.items():
        (d / (name + ".ext")).write_text(ext)
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj",
                "/CN=" + name, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext",
                cwd=d)
    return d


class TlsProxy:
    """Terminates TLS on a loopback port and relays the bytes to a TCP port."""

    def __init__(self, target_port, cert, key, client_ca=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(str(client_ca))
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handshakes_ok = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        self.handshakes_ok += 1
        up = socket.create_connection(("127.0.0.1", self.target))
        try:
            while True:
                if not tls.pending():
                    ready, _, _ = select.select([tls, up], [], [], 10)
                    if not ready:
                        return
                else:
                    ready = [tls]
                if tls in ready:
                    data = tls.recv(65536)
                    if not data:
                        return
                    up.sendall(data)
                if up in ready:
                    data = up.recv(65536)
                    if not data:
                        return
                    tls.sendall(data)
        except (ssl.SSLError, OSError):
            return
        finally:
            up.close()
            tls.close()

    def close(self):
        self.stopping = True
        self.sock.close()


@pytest.fixture
def proxy(daemon, pki):
    p = TlsProxy(daemon.port, pki / "server.crt", pki / "server.key")
    yield p
    p.close()


@pytest.fixture
def mtls_proxy(daemon, pki):
    p = TlsProxy(daemon.port, pki / "server.crt", pki / "server.key", client_ca=pki / "ca.crt")
    yield p
    p.close()


def test_tls_lifecycle(ctl, daemon, proxy, pki):
    for host in ("127.0.0.1", "localhost"):  # an IP SAN and a DNS SAN
        ep = "https://%s:%d" % (host, proxy.port)
        args = ["--endpoint", ep, "--cacert", pki / "ca.crt"]
        vm = "tls-" + host.replace(".", "-")
        assert ctl.ok(*args, "create", vm, "--kernel", daemon.kernel, "--boot").stdout == \
            "%s: running\n" % vm
        assert vm in ctl.ok(*args, "list", "-q").stdout.split()
        assert ctl.ok(*args, "wait", vm, "--for", "running").stdout == "%s: running\n" % vm
        assert ctl.ok(*args, "delete", vm).stdout == "%s: deleted\n" % vm
    assert proxy.handshakes_ok >= 8


def test_tls_ca_from_environment(ctl, proxy, pki):
    r = ctl.ok("--endpoint", "https://127.0.0.1:%d" % proxy.port, "list", "-q",
               env={"CHCPCTL_CACERT": str(pki / "ca.crt")})
    assert r.stdout == ""


def test_tls_untrusted_chain_exit_5(ctl, proxy, pki):
    ep = "https://127.0.0.1:%d" % proxy.port
    r = ctl.fails(5, "--endpoint", ep, "list")  # the system store does not know our CA
    assert "certificate verification failed" in r.stderr and "(unavailable)" in r.stderr
    r = ctl.fails(5, "--endpoint", ep, "--cacert", pki / "other-ca.crt", "list")
    assert "certificate verification failed" in r.stderr


def test_tls_name_mismatch_exit_5(ctl, proxy, pki):
    r = ctl.fails(5, "--endpoint", "https://127.0.0.1:%d" % proxy.port, "--cacert",
                  pki / "ca.crt", "--tls-server-name", "db.example", "list")
    assert "certificate verification failed: hostname mismatch" in r.stderr, r.stderr
    # --tls-server-name can also make a name match that the dialled address would not.
    ctl.ok("--endpoint", "https://127.0.0.1:%d" % proxy.port, "--cacert", pki / "ca.crt",
           "--tls-server-name", "localhost", "list")


def test_mutual_tls(ctl, mtls_proxy, pki):
    ep = ["--endpoint", "https://localhost:%d" % mtls_proxy.port, "--cacert", pki / "ca.crt"]
    r = ctl.fails(5, *ep, "list")
    assert "(unavailable)" in r.stderr
    ctl.ok(*ep, "--cert", pki / "client.crt", "--key", pki / "client.key", "list")


def test_bad_tls_files_exit_2(ctl, proxy, pki, tmp_path):
    ep = ["--endpoint", "https://127.0.0.1:%d" % proxy.port]
    r = ctl.fails(2, *ep, "--cacert", tmp_path / "missing.crt", "list")
    assert "missing.crt" in r.stderr and "cannot load the CA file" in r.stderr
    r = ctl.fails(2, *ep, "--cacert", pki / "ca.crt", "--cert", pki / "client.crt", "--key",
                  pki / "server.key", "list")
    assert "cannot load the client key" in r.stderr
    r = ctl.fails(2, *ep, "--key", pki / "client.key", "list")
    assert "a client key needs a client certificate" in r.stderr


def test_plain_http_to_a_tls_port_and_back(ctl, daemon, proxy, pki):
    # TLS to a clear-text port: the handshake fails, exit 5, no hang.
    r = ctl.fails(5, "--endpoint", "https://127.0.0.1:%d" % daemon.port, "--cacert",
                  pki / "ca.crt", "--request-timeout", "10s", "list")
    assert "TLS handshake" in r.stderr
    # Clear text to a TLS port: the proxy drops the garbage handshake.
    r = ctl.fails(5, "--endpoint", "http://127.0.0.1:%d" % proxy.port, "--request-timeout", "10s",
                  "list")
    assert "(unavailable)" in r.stderr
