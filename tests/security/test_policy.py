"""Authorization (src/auth/policy.c): per-identity methods and VM label
selectors. Denied calls get permission_denied with a message saying why and
are logged; ListVms shows only what the caller may see, pages included;
CreateVm must carry matching labels; the policy reloads on SIGHUP and a
broken one is refused (at start: exit 2; on reload: the old one stays)."""

import json
import signal

import pytest

from harness import run_binary, wait_for
from seclib import log_lines, new_token, token_line, write_policy, write_private

SPIFFE_A = "spiffe://example.org/deployer"  # seclib's "client" certificate
SPIFFE_B = "spiffe://example.org/team-b"  # "client-b"

RULES = [
    {"name": "team a", "principals": [SPIFFE_A], "methods": ["*"],
     "vms": [{"team": "a"}, {"team": "shared", "env": "*"}]},
    {"principals": ["spiffe://example.org/team-*"], "methods": ["CreateVm", "ListVms",
                                                               "GetVmInfo"],
     "vms": [{"team": "b"}]},
    {"principals": ["token:reader"], "methods": ["ListVms", "GetVmInfo"]},
]


@pytest.fixture
def policy_daemon(start_tls, tmp_path):
    reader = new_token()
    tokens = write_private(str(tmp_path / "tokens"), token_line("reader", reader))
    policy = write_policy(str(tmp_path / "policy.json"), RULES)
    d = start_tls(vmm=True, env={"CHCP_AUTH_POLICY_FILE": policy,
                                 "CHCP_AUTH_TOKENS_FILE": tokens})
    d.policy_path, d.reader = policy, reader
    return d


def create(d, vm_id, labels, cert="client"):
    return d.call("CreateVm", {"vmId": vm_id, "config": {"payload": {"kernel": d.kernel}},
                               "labels": labels}, cert=cert)


def listed(d, cert="default", token="default", page_size=0):
    ids, page = [], ""
    while True:
        status, body = d.call("ListVms", {"pageSize": page_size, "pageToken": page}, cert=cert,
                              token=token)
        assert status == 200, body
        ids += [v["vmId"] for v in body.get("vms", [])]
        page = body.get("nextPageToken", "")
        if not page:
            return ids


def test_label_selectors(policy_daemon):
    d = policy_daemon
    assert d.startup["access"].endswith("policy with 3 rule(s)")
    for vm_id, labels in [("a1", {"team": "a"}), ("a2", {"team": "a", "x": "y"}),
                          ("s1", {"team": "shared", "env": "dev"})]:
        assert create(d, vm_id, labels)[0] == 200, vm_id
    # CreateVm must carry labels the rule allows.
    for labels in [{}, {"team": "b"}, {"team": "shared"}]:
        status, body = create(d, "nope", labels)
        assert (status, body["code"]) == (403, "permission_denied"), labels
        assert body["message"] == (
            "spiffe://example.org/deployer may not create VM 'nope' with these labels: its "
            "policy allows CreateVm only for VMs labelled {team=a} or {team=shared,env=*}")
    # Team b (prefix principal) creates its own, never team a's.
    assert create(d, "b1", {"team": "b"}, cert="client-b")[0] == 200
    assert create(d, "b2", {"team": "a"}, cert="client-b")[0] == 403
    for cert, token, want in [("client", None, ["a1", "a2", "s1"]),
                              ("client-b", None, ["b1"]),
                              (None, d.reader, ["a1", "a2", "b1", "s1"])]:
        assert listed(d, cert, token) == want, cert
        assert listed(d, cert, token, page_size=1) == want, cert  # pages skip the unseen
    # VM calls on a VM outside the caller's labels.
    status, body = d.call("GetVmInfo", {"vmId": "a1"}, cert="client-b")
    assert (status, body["code"]) == (403, "permission_denied")
    assert body["message"] == ("spiffe://example.org/team-b may not touch VM 'a1': its policy "
                               "allows GetVmInfo only for VMs labelled {team=b}")
    assert d.call("GetVmInfo", {"vmId": "b1"}, cert="client-b")[0] == 200
    # Methods outside the rule.
    status, body = d.call("DeleteVm", {"vmId": "b1"}, cert="client-b")
    assert (status, body["code"]) == (403, "permission_denied")
    assert "may not call DeleteVm: its policy rules do not allow this method" in body["message"]
    status, body = d.call("BootVm", {"vmId": "a1"}, cert=None, token=d.reader)
    assert "token:reader may not call BootVm" in body["message"]
    # Unknown VMs stay not_found, as before.
    assert d.call("GetVmInfo", {"vmId": "zz"}, cert="client-b")[1]["code"] == "not_found"
    assert d.call("DeleteVm", {"vmId": "a2"})[0] == 200
    # Every denial is logged with who, from where, what.
    refused = log_lines(d, "call refused")
    assert len(refused) >= 7
    rec = [r for r in refused if r.get("vm_id") == "a1" and r["method"] == "GetVmInfo"][0]
    assert rec["principal"] == SPIFFE_B and rec["peer"].startswith("127.0.0.1:")
    assert rec["level"] == "warn"


def test_unnamed_caller_is_denied(policy_daemon):
    d = policy_daemon
    # A Unix-socket caller no rule names: uid:0 is not in the policy.
    import http.client
    import socket

    class UnixConn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(d.unix_socket)
    c = UnixConn("localhost")
    c.request("POST", "/cloudhypervisor.v1.VmService/ListVms", "{}",
              {"content-type": "application/json"})
    r = c.getresponse()
    body = json.loads(r.read())
    assert r.status == 403 and body["message"].startswith("uid:0 may not call ListVms: no "
                                                          "policy rule names it"), body


def test_policy_reload(policy_daemon):
    d = policy_daemon
    assert create(d, "a1", {"team": "a"})[0] == 200
    assert d.call("GetVmInfo", {"vmId": "a1"}, cert="client-b")[0] == 403
    rules = json.loads(json.dumps(RULES))
    rules[1]["vms"].append({"team": "a"})
    write_policy(d.policy_path, rules)
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: log_lines(d, "reload on SIGHUP done"), 10)
    assert d.call("GetVmInfo", {"vmId": "a1"}, cert="client-b")[0] == 200
    # A broken policy on reload: refused, the one in force stays.
    write_private(d.policy_path, '{"rules": [{"principals": ["x"], "methods": ["Nope"]}]}')
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: log_lines(d, "keeping the previous tokens and policy"), 10)
    assert "unknown method 'Nope'" in log_lines(d, "keeping the previous")[0]["msg"]
    assert d.call("GetVmInfo", {"vmId": "a1"}, cert="client-b")[0] == 200


@pytest.mark.parametrize("doc,why", [
    ('{"rules": [{"principals": ["x"], "methods": ["CreateVM"]}]}',
     "rules[0].methods[0]: unknown method 'CreateVM' (known: CreateVm, "),
    ('{"rules": [{"principals": ["*"], "methods": ["*"]}]}', "a bare '*' would name everyone"),
    ('{"rules": [{"principals": ["a*b"], "methods": ["*"]}]}', "'*' may only end a principal"),
    ('{"rules": [{"principals": ["x"], "methods": ["*"], "vm": []}]}', "unknown key 'vm'"),
    ('{"rules": [{"principals": ["x"], "methods": ["*"], "vms": []}]}', "non-empty list"),
    ('{"rules": [{"principals": ["x"], "methods": ["*"], "vms": [{"team": 1}]}]}',
     "rules[0].vms[0].team"),
    ('{"rules": [{"methods": ["*"]}]}', "rules[0].principals: expected a non-empty list"),
    ('{"rules": [], "rules": []}', "duplicate"),
    ('{"rules": [', "line 1"),
])
def test_bad_policy_stops_start(tmp_path, doc, why):
    path = write_private(str(tmp_path / "policy.json"), doc)
    r = run_binary([], env={"CHCP_PORT": "0", "CHCP_STATE_DIR": str(tmp_path / "s"),
                            "CHCP_AUTH_POLICY_FILE": path})
    assert r.returncode == 2, r.stdout
    assert why in r.stdout, r.stdout
