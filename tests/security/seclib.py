"""seclib.py - what the security suite's tests share: a throw-away PKI made
with the openssl command, a daemon serving TLS (harness.Daemon speaking
https), bearer tokens and policy files, and small TLS clients.

    pki = Pki(tmpdir)                 # CA, other CA, server, clients (see below)
    d = TlsDaemon(pki, client_ca=True, env={...}).start()
    d.https(path, body, cert="client")        # Connect JSON call over http/1.1
    tls_connect(d.port, pki, cert="expired")  # raw ssl socket, handshake done

Certificates (all P-256, valid two days unless said otherwise):
  ca, other-ca      two CAs; clients of other-ca are strangers
  server            CN=localhost, SAN DNS:localhost, IP:127.0.0.1 (from ca)
  server2           the same names, CN=localhost-2: what a reload swaps in
  client            CN=deployer,O=example, SAN URI spiffe://example.org/deployer,
                    DNS:deployer.example (from ca)
  client-b          CN=team-b, SAN URI spiffe://example.org/team-b (from ca)
  stranger          like client, signed by other-ca
  expired           like client, valid from 10 to 5 days ago (from ca)
"""

import hashlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Daemon  # noqa: E402

API = "/cloudhypervisor.v1.VmService/"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def openssl(*args, cwd):
    subprocess.run(["openssl"] + [str(a) for a in args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


class Pki:
    def __init__(self, d):
        self.dir = str(d)
        for ca in ("ca", "other-ca"):
            openssl("req", "-x509", *EC, "-keyout", ca + ".key", "-out", ca + ".crt", "-days", "2",
                    "-subj", "/CN=chcp test " + ca, "-addext",
                    "basicConstraints=critical,CA:TRUE", "-addext",
                    "keyUsage=critical,keyCertSign", cwd=self.dir)
        server = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        self.issue("server", "/CN=localhost", server)
        self.issue("server2", "/CN=localhost-2", server)
        self.issue("client", "/O=example/CN=deployer",
                   "subjectAltName=URI:spiffe://example.org/deployer,DNS:deployer.example\n"
                   "extendedKeyUsage=clientAuth\n")
        self.issue("client-b", "/CN=team-b",
                   "subjectAltName=URI:spiffe://example.org/team-b\nextendedKeyUsage=clientAuth\n")
        self.issue("stranger", "/O=example/CN=deployer",
                   "subjectAltName=URI:spiffe://example.org/deployer\n"
                   "extendedKeyUsage=clientAuth\n", ca="other-ca")
        self.issue_expired("expired", "/O=example/CN=deployer",
                           "subjectAltName=URI:spiffe://example.org/deployer\n"
                           "extendedKeyUsage=clientAuth\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def crt(self, name):
        return self.path(name + ".crt")

    def key(self, name):
        return self.path(name + ".key")

    def issue(self, name, subj, ext, ca="ca"):
        with open(self.path(name + ".ext"), "w") as f:
            f.write(ext)
        openssl("req", *EC, "-keyout", name + ".key", "-out", name + ".csr", "-subj", subj,
                cwd=self.dir)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext",
                cwd=self.dir)

    def issue_expired(self, name, subj, ext):
        """`openssl ca` can back-date (x509 -req cannot in OpenSSL 3.0)."""
        d = self.dir
        os.makedirs(os.path.join(d, "ca-db"), exist_ok=True)
        open(os.path.join(d, "ca-db", "index.txt"), "w").close()
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca=test\n[test]\ndatabase=ca-db/index.txt\n"
                    "new_certs_dir=ca-db\nserial=ca-db/serial\ndefault_md=sha256\n"
                    "policy=any\ncopy_extensions=none\n[any]\ncommonName=supplied\n"
                    "organizationName=optional\n[ext]\n" + ext)
        with open(os.path.join(d, "ca-db", "serial"), "w") as f:
            f.write("1000\n")
        openssl("req", *EC, "-keyout", name + ".key", "-out", name + ".csr", "-subj", subj, cwd=d)
        past = lambda days: time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - days * 86400))
        openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key",
                "-in", name + ".csr", "-out", name + ".crt", "-startdate", past(10), "-enddate",
                past(5), "-extensions", "ext", "-notext", cwd=d)


def client_context(pki, cert=None, alpn=None, version=None):
    ctx = ssl.create_default_context(cafile=pki.crt("ca"))
    if cert:
        ctx.load_cert_chain(pki.crt(cert), pki.key(cert))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if version:
        if version < ssl.TLSVersion.TLSv1_2:
            # Let the client try what the server must refuse.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_connect(port, pki, cert=None, alpn=None, version=None, timeout=10):
    """A TLS socket to the daemon with the handshake done (it may still fail
    on the first read under TLS 1.3, where the server checks the client's
    certificate after the client considers the handshake complete)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return client_context(pki, cert, alpn, version).wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def h1_exchange(sock, path, body=b"{}", headers=None, method="POST"):
    """One HTTP/1.1 request on an open (TLS) socket; returns (status, headers, body)."""
    hdrs = {"host": "localhost", "content-type": "application/json",
            "content-length": str(len(body))}
    hdrs.update(headers or {})
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
        "%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
    sock.sendall(head.encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response headers: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    rh = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        rh[k.strip().lower()] = v.strip()
    n = int(rh.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rh, rest[:n]


def new_token():
    """What docs/security.md tells operators to do: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def token_line(name, token):
    return "%s sha256:%s\n" % (name, hashlib.sha256(token.encode()).hexdigest())


def write_private(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def write_policy(path, rules):
    return write_private(path, json.dumps({"rules": rules}, indent=1))


class TlsDaemon(Daemon):
    """harness.Daemon with TLS on its TCP port. Its own HTTP helpers (health
    checks, .http()) speak https with the `cert` client certificate (which
    the daemon needs when mutual TLS is on) and `token`."""

    def __init__(self, pki, client_ca=True, cert="client", token=None, env=None, **kw):
        tls = {"CHCP_TLS_CERT": pki.crt("server"), "CHCP_TLS_KEY": pki.key("server")}
        if client_ca:
            tls["CHCP_TLS_CLIENT_CA"] = pki.crt("ca")
        tls.update(env or {})
        super().__init__(env=tls, **kw)
        self.pki = pki
        self.cert = cert if client_ca else None
        self.token = token

    @property
    def base_url(self):
        return "https://localhost:%d" % self.port

    def connection(self, timeout=10):
        import http.client
        return http.client.HTTPSConnection("localhost", self.port, timeout=timeout,
                                           context=client_context(self.pki, self.cert))

    def http(self, method, path, body=None, headers=None, timeout=10):
        h = dict(headers or {})
        if self.token and "authorization" not in {k.lower() for k in h}:
            h["authorization"] = "Bearer " + self.token
        return super().http(method, path, body=body, headers=h, timeout=timeout)

    def call(self, method, req, cert="default", token="default", timeout=10):
        """A Connect JSON call over TLS http/1.1: (status, decoded body)."""
        conn_cert = self.cert if cert == "default" else cert
        tok = self.token if token == "default" else token
        s = tls_connect(self.port, self.pki, conn_cert, alpn=["http/1.1"], timeout=timeout)
        try:
            headers = {"authorization": "Bearer " + tok} if tok else {}
            status, _, body = h1_exchange(s, API + method, json.dumps(req).encode(), headers)
        finally:
            s.close()
        return status, json.loads(body) if body else {}


def log_lines(d, contains):
    return [r for r in d.log_records() if contains in r.get("msg", "")]
