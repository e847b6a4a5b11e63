"""Secure defaults (src/daemon/config_security.c): the API listens on
127.0.0.1 unless told otherwise; a non-loopback address without client
authentication is refused at start (exit 2) with a message naming the
opt-in, and with the opt-in it starts and warns; bearer tokens in clear text
on a non-loopback address are refused the same way; mutual TLS or tokens over
TLS are enough. Daemons that bind a wildcard address run in a network
namespace of their own (unshare -n), so nothing here listens beyond this
test."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from harness import Daemon, base_env, chcp_bin, run_binary
from seclib import new_token, token_line, write_private


def records(text):
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def run_isolated(env, args=(), timeout=30):
    """Start chcp-api in a new network namespace, wait for its "listening"
    line, stop it with SIGTERM; returns (exit code, log records)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private network namespace")
    tmp = tempfile.mkdtemp(prefix="chcp-sec-ns-")
    try:
        full = {"CHCP_PORT": "0", "CHCP_STATE_DIR": os.path.join(tmp, "state")}
        full.update(env)
        log = os.path.join(tmp, "log")
        with open(log, "wb") as out:
            p = subprocess.Popen(["unshare", "-n", "--", chcp_bin()] + list(args),
                                 env=base_env(full), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and p.poll() is None:
                with open(log) as f:
                    if any(r.get("msg", "").endswith(" listening") for r in records(f.read())):
                        break
                time.sleep(0.05)
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=timeout)
        with open(log) as f:
            return rc, records(f.read())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_default_address_is_loopback(daemons):
    d = Daemon()
    daemons.append(d)
    del d.env["CHCP_ADDRESS"]  # the harness sets it; here the default decides
    d.start()
    assert d.startup["address"] == "127.0.0.1"
    # The kernel agrees: the listening socket is bound to 127.0.0.1.
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    listening = [r[1] for r in rows if r[3] == "0A"]
    assert "0100007F:%04X" % d.port in listening
    assert "00000000:%04X" % d.port not in listening


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.10"])
def test_non_loopback_without_auth_is_refused(tmp_path, address):
    r = run_binary([], env={"CHCP_ADDRESS": address, "CHCP_PORT": "0",
                            "CHCP_STATE_DIR": str(tmp_path / "s")})
    assert r.returncode == 2, r.stdout + r.stderr
    assert ("CHCP_ADDRESS: %s is not a loopback address and no client authentication is "
            "configured" % address) in r.stderr
    assert "CHCP_ALLOW_UNAUTHENTICATED=true" in r.stderr
    assert "--allow-unauthenticated true" in r.stderr
    # The flag spelling is refused the same way.
    r = run_binary(["--address", address], env={"CHCP_PORT": "0",
                                                "CHCP_STATE_DIR": str(tmp_path / "s")})
    assert r.returncode == 2 and "not a loopback address" in r.stderr


def test_loopback_addresses_need_nothing(tmp_path):
    for address in ("127.0.0.1", "localhost", "::1", "127.0.0.53", "::ffff:127.0.0.1"):
        r = run_binary(["--help"], env={"CHCP_ADDRESS": address})
        assert r.returncode == 0, address
    r = run_binary(["--help"])
    for name in ("CHCP_TLS_CERT", "CHCP_TLS_KEY", "CHCP_TLS_CLIENT_CA", "CHCP_TLS_MIN_VERSION",
                 "CHCP_AUTH_TOKENS_FILE", "CHCP_AUTH_POLICY_FILE", "CHCP_UNIX_ALLOWED_UIDS",
                 "CHCP_UNIX_ALLOWED_GIDS", "CHCP_ALLOW_UNAUTHENTICATED"):
        assert name in r.stdout, name


def test_opt_in_starts_and_warns():
    rc, recs = run_isolated({"CHCP_ADDRESS": "0.0.0.0", "CHCP_ALLOW_UNAUTHENTICATED": "true"})
    assert rc == 0, recs
    start = [r for r in recs if r["msg"].endswith(" listening")][0]
    assert start["address"] == "0.0.0.0" and start["tls"] == "off"
    warn = [r for r in recs if r["level"] == "warn" and "CHCP_ALLOW_UNAUTHENTICATED" in r["msg"]]
    assert warn and "without client authentication" in warn[0]["msg"]


def test_clear_text_tokens_off_loopback(tmp_path):
    tokens = write_private(str(tmp_path / "tokens"), token_line("ci", new_token()))
    env = {"CHCP_ADDRESS": "0.0.0.0", "CHCP_PORT": "0", "CHCP_STATE_DIR": str(tmp_path / "s"),
           "CHCP_AUTH_TOKENS_FILE": tokens}
    r = run_binary([], env=env)
    assert r.returncode == 2
    assert "bearer tokens would cross the network in clear text" in r.stderr, r.stderr
    env["CHCP_ALLOW_UNAUTHENTICATED"] = "true"
    rc, recs = run_isolated(env)
    assert rc == 0
    assert any("bearer tokens cross 0.0.0.0 in clear text" in r["msg"] for r in recs)


def test_authenticated_wildcard_starts(pki, tmp_path):
    tls = {"CHCP_TLS_CERT": pki.crt("server"), "CHCP_TLS_KEY": pki.key("server")}
    rc, recs = run_isolated(dict(tls, CHCP_ADDRESS="0.0.0.0", CHCP_TLS_CLIENT_CA=pki.crt("ca")))
    assert rc == 0, recs
    start = [r for r in recs if r["msg"].endswith(" listening")][0]
    assert start["tls"] == "mutual"
    assert not [r for r in recs if r["level"] == "warn" and "UNAUTHENTICATED" in r["msg"]]
    tokens = write_private(str(tmp_path / "tokens"), token_line("ci", new_token()))
    rc, recs = run_isolated(dict(tls, CHCP_ADDRESS="::", CHCP_AUTH_TOKENS_FILE=tokens))
    assert rc == 0, recs
    # TLS without any client authentication is still unauthenticated.
    r = run_binary([], env=dict(tls, CHCP_ADDRESS="0.0.0.0", CHCP_PORT="0",
                                CHCP_STATE_DIR=str(tmp_path / "s")))
    assert r.returncode == 2 and "no client authentication" in r.stderr


def test_tls_settings_come_in_pairs(pki, tmp_path):
    base = {"CHCP_PORT": "0", "CHCP_STATE_DIR": str(tmp_path / "s")}
    cases = [
        ({"CHCP_TLS_CERT": pki.crt("server")}, "CHCP_TLS_CERT is set but CHCP_TLS_KEY is not"),
        ({"CHCP_TLS_KEY": pki.key("server")}, "CHCP_TLS_KEY is set but CHCP_TLS_CERT is not"),
        ({"CHCP_TLS_CLIENT_CA": pki.crt("ca")}, "CHCP_TLS_CLIENT_CA: mutual TLS needs TLS"),
        ({"CHCP_TLS_MIN_VERSION": "1.3"}, "CHCP_TLS_MIN_VERSION: TLS is off"),
        ({"CHCP_TLS_MIN_VERSION": "1.1"}, "CHCP_TLS_MIN_VERSION: '1.1' is not 1.2 or 1.3"),
        ({"CHCP_TLS_CERT": "relative.pem"}, "CHCP_TLS_CERT: not an absolute path"),
    ]
    for env, why in cases:
        r = run_binary([], env=dict(base, **env))
        assert r.returncode == 2 and why in r.stderr, (env, r.stderr)
