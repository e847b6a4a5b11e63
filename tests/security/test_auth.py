"""Client authentication (src/auth): bearer tokens from a file of SHA-256
hashes (over TLS without client certificates, and over gRPC metadata), their
rejections and reload on SIGHUP; the Unix socket's peer credentials and
allow-lists, checked with a client running as another uid; /metrics and
/_/health needing what the API needs; the caller named on spans."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from harness import wait_for
from seclib import (API, h1_exchange, log_lines, new_token, tls_connect, token_line,
                    write_private)

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def tokens(tmp_path):
    """A tokens file with two tokens: ci and ops."""
    t = {"ci": new_token(), "ops": new_token()}
    path = write_private(str(tmp_path / "tokens"),
                         "# chcp tokens\n\n" + "".join(token_line(n, v) for n, v in t.items()))
    return path, t


def token_daemon(start_tls, tokens, **kw):
    """TLS without client certificates: tokens are the only way in."""
    path, t = tokens
    return start_tls(client_ca=False, token=t["ci"],
                     env=dict({"CHCP_AUTH_TOKENS_FILE": path}, **kw.pop("env", {})), **kw)


def test_tokens_accepted_and_refused(start_tls, tokens):
    d = token_daemon(start_tls, tokens)
    _, t = tokens
    assert d.startup["access"].startswith("clients must authenticate")
    assert d.call("ListVms", {}) == (200, {})
    assert d.call("ListVms", {}, token=t["ops"]) == (200, {})
    cases = {
        None: "authentication required",
        t["ci"] + "x": "the bearer token is not valid",
        t["ci"][:-1]: "the bearer token is not valid",
        "short": "the bearer token is not valid",
        new_token(): "the bearer token is not valid",
    }
    for tok, why in cases.items():
        status, body = d.call("ListVms", {}, token=tok)
        assert (status, body["code"]) == (401, "unauthenticated"), (tok, body)
        assert why in body["message"]
        assert t["ci"] not in body["message"]
    # Another scheme is refused as such.
    with tls_connect(d.port, d.pki, alpn=["http/1.1"]) as s:
        status, _, body = h1_exchange(s, API + "ListVms", headers={"authorization": "Basic eDp5"})
    assert status == 401 and b"Bearer" in body
    # Every refusal is logged, no token in the log.
    refusals = log_lines(d, "call refused")
    assert len(refusals) >= len(cases)
    assert t["ci"] not in d.output() and t["ops"] not in d.output()


def test_token_over_grpc(start_tls, tokens, buf, schema_image):
    """The token as gRPC metadata, over h2 negotiated by ALPN (grpc-go)."""
    d = token_daemon(start_tls, tokens)
    _, t = tokens
    base = [buf, "curl", "--schema", schema_image, "--protocol", "grpc", "--cacert",
            d.pki.crt("ca"), "--data", "{}", "https://localhost:%d%sListVms" % (d.port, API)]
    r = subprocess.run(base + ["-H", "authorization: Bearer " + t["ops"]], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout) == {}, r.stderr
    r = subprocess.run(base + ["-H", "authorization: Bearer " + new_token()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and '"code": "unauthenticated"' in r.stderr, r.stderr


def test_tokens_reload_on_sighup(start_tls, tokens):
    d = token_daemon(start_tls, tokens)
    path, t = tokens
    fresh = new_token()
    write_private(path, token_line("ops", t["ops"]) + token_line("fresh", fresh))
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: log_lines(d, "reload on SIGHUP done"), 10), d.output()
    assert d.call("ListVms", {}, token=fresh)[0] == 200
    assert d.call("ListVms", {}, token=t["ops"])[0] == 200
    assert d.call("ListVms", {}, token=t["ci"])[0] == 401  # revoked
    # A broken file keeps the tokens in force.
    write_private(path, "fresh not-a-hash\n")
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: log_lines(d, "keeping the previous tokens and policy"), 10)
    assert "line 1" in log_lines(d, "keeping the previous tokens")[0]["msg"]
    assert d.call("ListVms", {}, token=fresh)[0] == 200


@pytest.mark.parametrize("content,why", [
    ("ci sha256:abc\n", "line 1: expected"),
    ("c i sha256:%s\n" % ("0" * 64), "expected"),
    ("ci md5:%s\n" % ("0" * 32), "expected"),
    ("ci sha256:%s\nci sha256:%s\n" % ("0" * 64, "1" * 64), "used twice"),
    ("a sha256:%s\nb sha256:%s\n" % ("0" * 64, "0" * 64), "the same token as 'a'"),
    ("bad/name sha256:%s\n" % ("0" * 64), "the name must be"),
])
def test_bad_tokens_file_stops_start(tmp_path, content, why):
    from harness import run_binary
    path = write_private(str(tmp_path / "tokens"), content)
    r = run_binary([], env={"CHCP_PORT": "0", "CHCP_STATE_DIR": str(tmp_path / "s"),
                            "CHCP_AUTH_TOKENS_FILE": path})
    assert r.returncode == 2, r.stdout + r.stderr
    assert why in r.stdout, r.stdout


def test_tokens_file_writable_by_others_is_refused(tmp_path):
    from harness import run_binary
    path = write_private(str(tmp_path / "tokens"), token_line("ci", new_token()))
    os.chmod(path, 0o620)
    r = run_binary([], env={"CHCP_PORT": "0", "CHCP_STATE_DIR": str(tmp_path / "s"),
                            "CHCP_AUTH_TOKENS_FILE": path})
    assert r.returncode == 2 and "writable by group or others" in r.stdout, r.stdout


# ---- the Unix socket: SO_PEERCRED ----------------------------------------------

NOBODY = 65534


def unix_call_as(sock_path, method, body, uid=None, gid=None, timeout=20):
    """A Connect call on the Unix socket from a child running as uid/gid
    (root drops to them first): returns (status, decoded body)."""
    code = r"""
import json, os, socket, sys
sock, method, body, uid, gid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
if gid != "-":
    os.setgroups([])
    os.setgid(int(gid))
if uid != "-":
    os.setuid(int(uid))
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
req = ("POST /cloudhypervisor.v1.VmService/%s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
       "\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (method, len(body), body))
s.sendall(req.encode())
data = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    data += c
head, _, rest = data.partition(b"\r\n\r\n")
print(json.dumps([int(head.split()[1]), rest.decode()]))
"""
    r = subprocess.run([sys.executable, "-c", code, sock_path, method, json.dumps(body),
                        str(uid) if uid is not None else "-", str(gid) if gid is not None else "-"],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    status, text = json.loads(r.stdout)
    return status, json.loads(text) if text else {}


@pytest.fixture
def open_socket_dir():
    """The daemon's socket reachable by another uid (the test drops to
    nobody): a world-searchable directory and, below, a 0666 socket."""
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another uid")
    d = tempfile.mkdtemp(prefix="chcp-sec-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unix_socket_names_the_peer(start_daemon, open_socket_dir):
    d = start_daemon(env={"CHCP_UNIX_SOCKET": os.path.join(open_socket_dir, "api.sock")})
    os.chmod(d.env["CHCP_UNIX_SOCKET"], 0o666)
    # No allow-lists: whoever the socket's mode admits, named by uid.
    status, body = unix_call_as(d.env["CHCP_UNIX_SOCKET"], "DeleteVm", {"vmId": "gone"},
                                uid=NOBODY, gid=NOBODY)
    assert status in (200, 404), body  # the manager's answer, whichever it is
    recs = log_lines(d, "DeleteVm requested")
    assert recs and recs[-1]["principal"] == "uid:%d" % NOBODY and recs[-1]["peer"] == "unix"


def test_unix_allow_lists(start_daemon, open_socket_dir):
    sock = os.path.join(open_socket_dir, "api.sock")
    d = start_daemon(env={"CHCP_UNIX_SOCKET": sock, "CHCP_UNIX_ALLOWED_UIDS": "0",
                          "CHCP_UNIX_ALLOWED_GIDS": "4242"})
    os.chmod(sock, 0o666)
    assert unix_call_as(sock, "ListVms", {}) == (200, {})  # root: listed
    status, body = unix_call_as(sock, "ListVms", {}, uid=NOBODY, gid=NOBODY)
    assert (status, body["code"]) == (403, "permission_denied"), body
    assert "uid %d is not allowed on this Unix socket" % NOBODY in body["message"]
    # Allowed by group.
    assert unix_call_as(sock, "ListVms", {}, uid=NOBODY, gid=4242) == (200, {})
    denied = log_lines(d, "is not allowed on this Unix socket")
    assert denied and denied[0]["peer"] == "unix"


def test_unix_allow_lists_by_name(tmp_path):
    from harness import run_binary
    r = run_binary([], env={"CHCP_PORT": "0", "CHCP_STATE_DIR": str(tmp_path / "s"),
                            "CHCP_UNIX_ALLOWED_UIDS": "root,no-such-user-here"})
    assert r.returncode == 2
    assert "CHCP_UNIX_ALLOWED_UIDS: no user named 'no-such-user-here'" in r.stderr, r.stderr


# ---- endpoints beside the API -----------------------------------------------------

def test_metrics_need_what_the_api_needs(start_tls, tokens):
    d = token_daemon(start_tls, tokens)
    d.token = None
    for path in ("/livez", "/readyz", "/health"):
        assert d.http("GET", path)[0] == 200, path
    for path in ("/metrics", "/_/health"):
        assert d.http("GET", path)[0] == 401, path
        status, _, body = d.http("GET", path, headers={"authorization": "Bearer " + tokens[1]["ci"]})
        assert status == 200 and body, path


# ---- the caller on spans -------------------------------------------------------------

def test_principal_on_spans(start_tls, tokens):
    sys.path.insert(0, os.path.join(HERE, "..", "o11y"))
    from receiver import Receiver, attrs_to_dict
    r = Receiver().start()
    try:
        d = token_daemon(start_tls, tokens, env={
            "UNKEY_CHCP_OTEL_ENABLED": "true", "UNKEY_CHCP_OTEL_ENDPOINT": r.endpoint,
            "UNKEY_CHCP_OTEL_SAMPLING_RATE": "1", "CHCP_OTEL_BATCH_DELAY_MS": "100",
            "UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED": "false"})
        assert d.call("ListVms", {})[0] == 200
        assert d.call("ListVms", {}, token=new_token())[0] == 401

        def server_spans():
            return [attrs_to_dict(s.attributes) for _, s in r.spans()
                    if s.name.endswith("/ListVms")]
        assert wait_for(lambda: len(server_spans()) >= 2, 15)
        users = sorted(a.get("enduser.id", "") for a in server_spans())
        assert users == ["", "token:ci"], users  # the refused call has no principal
    finally:
        r.stop()


def test_grpc_health_is_open_reflection_is_not(start_tls, tokens):
    """grpc.health.v1.Health is a probe, like /readyz: it answers without
    credentials (a Kubernetes gRPC probe sends none). Reflection describes
    the API and needs what the API needs."""
    d = token_daemon(start_tls, tokens)
    _, t = tokens
    with tls_connect(d.port, d.pki, alpn=["http/1.1"]) as s:
        status, _, body = h1_exchange(s, "/grpc.health.v1.Health/Check", b"{}")
    assert (status, json.loads(body)) == (200, {"status": "SERVING"})
    reflect = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
    # A Connect streaming call: one enveloped JSON message.
    msg = json.dumps({"listServices": ""}).encode()
    env = b"\x00" + len(msg).to_bytes(4, "big") + msg
    for tok, want in ((None, "unauthenticated"), (t["ci"], None)):
        headers = {"content-type": "application/connect+json"}
        if tok:
            headers["authorization"] = "Bearer " + tok
        with tls_connect(d.port, d.pki, alpn=["http/1.1"]) as s:
            status, body = h1_stream(s, reflect, env, headers)
        assert status == 200
        envelopes = split_envelopes(body)
        flags, end = envelopes[-1]
        assert flags & 0x02, envelopes  # the end-stream envelope
        end = json.loads(end)
        if want:
            assert end["error"]["code"] == want, end
        else:
            assert "error" not in end, end
            assert b"cloudhypervisor.v1.VmService" in envelopes[0][1]


def h1_stream(sock, path, body, headers):
    """POST with a body; read a chunked response whole: (status, body)."""
    head = "POST %s HTTP/1.1\r\nhost: localhost\r\ncontent-length: %d\r\n" % (path, len(body))
    head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
    sock.sendall(head.encode() + body)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower(), head
    out = b""
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        n = int(size_line, 16)
        if n == 0:
            break
        out += rest[:n]
        rest = rest[n + 2:]
    return int(head.split()[1]), out


def split_envelopes(body):
    """[(flags, payload)] of a Connect streaming body."""
    out, off = [], 0
    while off + 5 <= len(body):
        n = int.from_bytes(body[off + 1:off + 5], "big")
        out.append((body[off], body[off + 5:off + 5 + n]))
        off += 5 + n
    return out
