"""Tests of the Cloud Hypervisor stand-in itself (make standin-test).

Each test starts its own stand-in in a pytest tmp dir and kills it on the way
out; the expectations are CH's behaviour at the modelled version (see
README.md), so a change that makes the stand-in drift from CH fails here.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from chclient import BIN, Conn, StandIn, minimal_config, names, read_events  # noqa: E402

if not BIN or not os.access(BIN, os.X_OK):
    pytest.skip("CH_STANDIN not set (run: make standin-test)", allow_module_level=True)


def run(args, timeout=5, cwd=None):
    return subprocess.run([BIN] + args, capture_output=True, timeout=timeout, env={}, cwd=cwd)


def chain(r):
    body = r.json()
    assert isinstance(body, list) and all(isinstance(s, str) for s in body), body
    return body


def booted(si, tmp_path, **cfg):
    assert si.put("vm.create", minimal_config(tmp_path, **cfg)).status == 204
    r = si.put("vm.boot")
    assert r.status == 204, r
    return si


# ---- command line --------------------------------------------------------------------


def test_version():
    r = run(["--version"])
    assert r.returncode == 0
    assert r.stdout.decode().splitlines()[0] == "cloud-hypervisor v54.0.0"
    r = run(["--version", "-v"])
    assert "Enabled features" in r.stdout.decode()


@pytest.mark.parametrize("args,msg", [
    (["--bogus"], "unexpected argument '--bogus' found"),
    (["positional"], "unexpected argument 'positional' found"),
    (["-x"], "unexpected argument '-x' found"),
    (["--api-socket"], "a value is required for '--api-socket <api-socket>'"),
    (["--log-file", "a", "--log-file", "b"], "cannot be used multiple times"),
    (["--seccomp", "maybe"], "invalid value 'maybe' for '--seccomp <seccomp>'"),
])
def test_clap_errors_exit_2(args, msg, tmp_path):
    r = run(args, cwd=tmp_path)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert err.startswith("error: ") and msg in err
    assert os.listdir(tmp_path) == []


def test_unsupported_vm_flag_is_an_error(tmp_path):
    r = run(["--kernel", "/x"], cwd=tmp_path)
    assert r.returncode == 1 and b"--kernel" in r.stderr


def test_bad_api_socket_fd():
    r = run(["--api-socket", "fd=abc"])
    assert r.returncode == 1
    assert b"Error parsing --api-socket" in r.stderr


def test_log_file_unwritable(tmp_path):
    r = run(["--log-file", str(tmp_path / "no" / "such" / "log")])
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "Error: Cloud Hypervisor exited with the following chain of errors:" in err
    assert "Error creating log file" in err and "(os error 2)" in err


def test_event_monitor_needs_path_or_fd(tmp_path):
    r = run(["--event-monitor", "bogus"])
    assert r.returncode == 1 and b"Error parsing --event-monitor" in r.stderr


# ---- API socket ----------------------------------------------------------------------------


def test_path_socket_mode_lock_and_removal(tmp_path):
    with StandIn(tmp_path) as si:
        st = os.stat(si.sock_path)
        assert oct(st.st_mode & 0o777) == "0o700" or (st.st_mode & 0o077) == 0
        lock = si.sock_path + ".lock"
        assert os.path.exists(lock) and (os.stat(lock).st_mode & 0o077) == 0
        assert (os.stat(si.log_path).st_mode & 0o077) == 0
        r = si.put("vmm.shutdown")
        assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "0"
        assert si.wait_exit() == 0
        assert not os.path.exists(si.sock_path)
        assert os.path.exists(lock)


def test_bare_path_argument(tmp_path):
    sock = str(tmp_path / "bare.sock")
    with StandIn(tmp_path, args=["--api-socket", sock]) as si:
        si.sock_path = sock
        si.wait_socket()
        c = Conn(sock)
        assert c.request("GET", "vmm.ping").status == 200
        c.close()
        si.signal(signal.SIGTERM)
        assert si.wait_exit() == 0
        assert not os.path.exists(sock)


def test_second_instance_on_same_path_fails(tmp_path):
    with StandIn(tmp_path) as first:
        r = run(["--api-socket", f"path={first.sock_path}"])
        assert r.returncode == 1
        err = r.stderr.decode()
        assert "Failed to start the VMM thread" in err
        assert "is already in use by another running instance" in err
        assert first.get("vmm.ping").status == 200


def test_stale_socket_is_replaced(tmp_path):
    stale = socket.socket(socket.AF_UNIX)
    path = str(tmp_path / "api.sock")
    stale.bind(path)
    stale.close()
    with StandIn(tmp_path) as si:
        assert si.get("vmm.ping").status == 200


def test_inherited_listening_fd(tmp_path):
    lsock = socket.socket(socket.AF_UNIX)
    path = str(tmp_path / "pre.sock")
    lsock.bind(path)
    lsock.listen(8)
    fd = lsock.fileno()
    with StandIn(tmp_path, args=["--api-socket", f"fd={fd}"], pass_fds=[fd]) as si:
        c = Conn(path)
        r = c.request("GET", "vmm.ping")
        assert r.status == 200 and r.json()["pid"] == si.proc.pid
        c.close()
        si.signal(signal.SIGTERM)
        assert si.wait_exit() == 0
    lsock.close()


def test_event_monitor_fd_pipe(tmp_path):
    rfd, wfd = os.pipe()
    with StandIn(tmp_path, args=["--event-monitor", f"fd={wfd}", "--api-socket",
                                 f"path={tmp_path}/api.sock"], pass_fds=[wfd]) as si:
        os.close(wfd)
        si.wait_socket()
        si.signal(signal.SIGTERM)
        assert si.wait_exit() == 0
        data = os.read(rfd, 65536).decode()
    os.close(rfd)
    evs = [json.loads(c) for c in data.split("\n\n") if c.strip()]
    assert names(evs) == ["vmm/starting", "vmm/shutdown"]


# ---- wire format (micro_http) -------------------------------------------------------------------


def test_ping(tmp_path):
    with StandIn(tmp_path) as si:
        r = si.get("vmm.ping")
        assert r.status == 200
        body = r.json()
        assert body == {"build_version": "v54.0.0", "version": "54.0.0", "pid": si.proc.pid,
                        "features": body["features"]}
        assert isinstance(body["features"], list)


def test_raw_status_lines_and_headers(tmp_path):
    with StandIn(tmp_path) as si:
        c = si.conn()
        r = c.request("PUT", "vm.create", minimal_config(tmp_path))
        assert r.raw_head == (b"HTTP/1.1 204 \r\nServer: Cloud Hypervisor API\r\n"
                              b"Connection: keep-alive\r\n\r\n")
        r = c.request("GET", "vm.info")  # same connection: keep-alive
        assert r.status_line == b"HTTP/1.1 200 "
        assert r.headers["server"] == "Cloud Hypervisor API"
        assert r.headers["connection"] == "keep-alive"
        assert r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.body)
        r = c.request("GET", "nope")
        assert r.status == 404 and r.json() == ["Not Found"]
        assert r.status_line == b"HTTP/1.1 404 "


def test_http_absolute_uri_and_query_string(tmp_path):
    with StandIn(tmp_path) as si:
        c = si.conn()
        c.send_raw(b"GET http://localhost/api/v1/vmm.ping HTTP/1.1\r\n\r\n")
        assert c.read_response().status == 200
        c.send_raw(b"GET /api/v1/vmm.ping?x=1 HTTP/1.1\r\n\r\n")
        assert c.read_response().status == 404


@pytest.mark.parametrize("method,path,status,body", [
    ("GET", "vm.boot", 400, ["Bad Request"]),
    ("PUT", "vm.info", 400, ["Bad Request"]),
    ("PUT", "vmm.ping", 400, ["Bad Request"]),
    ("GET", "vmm.shutdown", 400, ["Bad Request"]),
    ("GET", "vm.create", 400, ["Bad Request"]),
    ("PUT", "vm.counters", 400, ["Bad Request"]),
    ("DELETE", "vm.info", 400, ["Bad Request"]),
    ("PATCH", "vm.boot", 400, None),     # EndpointHandler: bare 400, no body
    ("DELETE", "vm.pause", 400, None),
    ("GET", "vm.coredump", 404, ["Not Found"]),  # no guest_debug feature
])
def test_wrong_method_is_400_never_405(tmp_path, method, path, status, body):
    with StandIn(tmp_path) as si:
        r = si.call(method, path)
        assert r.status == status
        if body is None:
            assert r.body == b"" and r.headers["content-length"] == "0"
        else:
            assert r.json() == body


def test_unsupported_method_is_a_micro_http_parse_error(tmp_path):
    with StandIn(tmp_path) as si:
        c = si.conn()
        c.send_raw(b"POST /api/v1/vmm.ping HTTP/1.1\r\n\r\n")
        r = c.read_response()
        assert r.status == 400
        assert r.headers["server"] == "Firecracker API"
        assert b"Invalid HTTP Method" in r.body
        c.send_raw(b"GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n")  # connection still usable
        assert c.read_response().status == 200
        c.send_raw(b"GET /api/v1/vmm.ping HTTP/2.0\r\n\r\n")
        assert b"Invalid HTTP Version" in c.read_response().body
        c.send_raw(b"GET /api/v1/vmm.ping HTTP/1.1\r\nContent-Length: x1\r\n\r\n")
        assert b"Invalid value. Key:Content-Length" in c.read_response().body


def test_body_rules(tmp_path):
    with StandIn(tmp_path) as si:
        r = si.put("vm.create")  # no body at all
        assert r.status == 400 and r.body == b""
        r = si.put("vm.create", "{not json")
        assert r.status == 400 and chain(r)[0] == "Failed to deserialize JSON"
        assert len(chain(r)) == 2
        r = si.put("vm.create", {"cpus": {"boot_vcpus": "two", "max_vcpus": 2}})
        assert r.status == 400
        assert chain(r)[1].startswith('invalid type: string "two", expected u32')
        r = si.put("vm.create", {"cpus": {"boot_vcpus": 1}})
        assert chain(r) == ["Failed to deserialize JSON", "missing field `max_vcpus`"]
        r = si.put("vm.create", {"memory": {}})
        assert "missing field `size`" in chain(r)[1]
        r = si.put("vm.create", {"console": {"mode": "Fancy"}})
        assert "unknown variant `Fancy`" in chain(r)[1]
        r = si.put("vm.create", {"net": [{"ip": "not-an-ip"}]})
        assert r.status == 400
        r = si.put("vm.create", [])
        assert "expected struct VmConfig" in chain(r)[1]
        assert si.get("vm.info").status == 404  # nothing stored
        assert si.put("vm.create", minimal_config(tmp_path)).status == 204
        r = si.put("vm.boot", "{}")  # body on a body-less action
        assert r.status == 400 and r.json() == ["Bad Request"]
        r = si.put("vm.resize")  # body-taking action without body
        assert r.status == 400 and r.json() == ["Bad Request"]
        # Content-Length: 0 means "no body"
        c = si.conn()
        c.send_raw(b"PUT /api/v1/vm.boot HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert c.read_response().status == 204


def test_expect_100_continue(tmp_path):
    with StandIn(tmp_path) as si:
        c = si.conn()
        body = json.dumps(minimal_config(tmp_path)).encode()
        c.send_raw(b"PUT /api/v1/vm.create HTTP/1.1\r\nExpect: 100-continue\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body))
        r = c.read_response()
        assert r.status == 100 and "content-length" not in r.headers
        c.send_raw(body)
        assert c.read_response().status == 204


def test_payload_limit_4mib(tmp_path):
    with StandIn(tmp_path) as si:
        c = si.conn()
        c.send_raw(b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
                   % ((4 << 20) + 1))
        r = c.read_response()
        assert r.status == 400 and b"larger than the limit of 4194304" in r.body
        # exactly 4 MiB is accepted (and then fails as JSON, not as size)
        pad = b" " * ((4 << 20) - 2)
        c2 = si.conn()
        r = c2.request("PUT", "vm.create", b"{}" + pad)
        assert r.status == 204


def test_pipelined_requests(tmp_path):
    with StandIn(tmp_path) as si:
        c = si.conn()
        c.send_raw(b"GET /api/v1/vmm.ping HTTP/1.1\r\n\r\nGET /api/v1/vm.info HTTP/1.1\r\n\r\n")
        assert c.read_response().status == 200
        assert c.read_response().status == 404


def test_max_ten_connections(tmp_path):
    with StandIn(tmp_path) as si:
        conns = [si.conn() for _ in range(10)]
        for c in conns:  # make sure each one is registered
            assert c.request("GET", "vmm.ping").status == 200
        extra = si.conn()
        data = b""
        while True:
            chunk = extra.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 503\r\n") and b"Too many open connections" in data
        conns[0].close()
        time.sleep(0.05)
        assert si.get("vmm.ping").status == 200


def test_half_close_drops_the_connection(tmp_path):
    with StandIn(tmp_path) as si:
        c = si.conn()
        c.send_raw(b"GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()
        assert si.get("vmm.ping").status == 200


def test_garbage_input_never_kills_the_server(tmp_path):
    import random
    rng = random.Random(1234)
    samples = [b"\x00" * 3000, b"GET", b"\r\n" * 500, b"GET / HTTP/1.1\r\n" + b"A" * 5000,
               b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: 5\r\n\r\n\xff\xfe\x00{[",
               b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
               b"GET /api/v1/vmm.ping HTTP/1.1\r\nNoColonHere\r\n\r\n",
               b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: 12\r\n\r\n" + b'{"cpus":' +
               b"[" * 4]
    samples += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000))) for _ in range(40)]
    nested = b"[" * 100000
    samples.append(b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
                   % len(nested) + nested)
    with StandIn(tmp_path) as si:
        for data in samples:
            c = si.conn(timeout=2)
            try:
                c.send_raw(data)
                c.sock.settimeout(0.05)
                try:
                    c.sock.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    pass
            finally:
                c.close()
            assert si.proc.poll() is None
        assert si.get("vmm.ping").status == 200


# ---- state machine ------------------------------------------------------------------------------

STATES = ["none", "created", "running", "paused"]
# call -> expected status per state (vmm-apis.md "Action by state as seen over HTTP")
TABLE = {
    "vm.create": [204, 500, 500, 500],
    "vm.boot": [404, 204, 500, 500],
    "vm.pause": [500, 500, 204, 500],
    "vm.resume": [500, 500, 500, 204],
    "vm.shutdown": [500, 500, 204, 204],
    "vm.reboot": [404, 404, 204, 204],
    "vm.power-button": [500, 500, 204, 204],
    "vm.delete": [204, 204, 204, 204],
    "vm.info": [404, 200, 200, 200],
    "vm.counters": [500, 500, 200, 200],
    "vm.nmi": [500, 500, 204, 204],
}


def enter_state(si, tmp_path, state):
    if state == "none":
        return
    assert si.put("vm.create", minimal_config(tmp_path)).status == 204
    if state in ("running", "paused"):
        assert si.put("vm.boot").status == 204
    if state == "paused":
        assert si.put("vm.pause").status == 204


@pytest.mark.parametrize("call", list(TABLE))
@pytest.mark.parametrize("state_idx", range(4), ids=STATES)
def test_action_by_state(tmp_path, call, state_idx):
    with StandIn(tmp_path, no_shutdown=True) as si:
        enter_state(si, tmp_path, STATES[state_idx])
        method = "GET" if call in ("vm.info", "vm.counters") else "PUT"
        body = minimal_config(tmp_path) if call == "vm.create" else None
        r = si.call(method, call, body)
        assert r.status == TABLE[call][state_idx], (call, STATES[state_idx], r)
        if r.status >= 400:
            c = chain(r)
            assert c[0] == "Error from API" and len(c) >= 3
        elif r.status == 204:
            assert r.body == b"" and "content-length" not in r.headers


def test_error_chains(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        assert chain(si.get("vm.info")) == ["Error from API", "The VM info is not available",
                                            "VM is not created"]
        assert chain(si.put("vm.boot")) == ["Error from API", "The VM could not boot",
                                            "VM config is missing"]
        assert chain(si.put("vm.pause")) == ["Error from API", "The VM could not be paused",
                                             "VM is not running"]
        assert chain(si.put("vm.reboot")) == ["Error from API", "The VM could not reboot",
                                              "VM is not created"]
        booted(si, tmp_path)
        assert chain(si.put("vm.boot")) == ["Error from API", "The VM could not boot",
                                            "VM is already created"]
        assert chain(si.put("vm.create", minimal_config(tmp_path)))[2] == "VM is already created"
        r = si.put("vm.resume")
        assert chain(r)[-1] == "Invalid transition: InvalidStateTransition(Running, Running)"
        assert si.put("vm.pause").status == 204
        r = si.put("vm.pause")
        assert chain(r) == ["Error from API", "The VM could not be paused", "Cannot pause VM",
                            "Failed to pause migratable component",
                            "Invalid transition: InvalidStateTransition(Paused, Paused)"]
        r = si.put("vm.boot")  # boot on a paused VM is refused, use resume
        assert r.status == 500


def test_info_shape_and_defaults(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = {"payload": {"kernel": minimal_config(tmp_path)["payload"]["kernel"]},
               "disks": [{"path": str(tmp_path / "d.img")}], "net": [{"tap": "t0"}],
               "typo_field": 1}
        (tmp_path / "d.img").write_bytes(b"\0" * 4096)
        assert si.put("vm.create", cfg).status == 204
        info = si.get("vm.info").json()
        assert set(info) == {"config", "state", "memory_actual_size"}
        assert info["state"] == "Created"
        c = info["config"]
        assert "typo_field" not in c
        assert c["cpus"]["boot_vcpus"] == 1 and c["cpus"]["max_vcpus"] == 1
        assert c["memory"]["size"] == 512 << 20 and info["memory_actual_size"] == 512 << 20
        assert c["rng"]["src"] == "/dev/urandom"
        assert c["serial"] == {"mode": "Null"}
        assert c["console"]["mode"] == "Tty"
        assert c["disks"][0]["num_queues"] == 1 and c["disks"][0]["queue_size"] == 128
        assert c["net"][0]["num_queues"] == 2 and c["net"][0]["offload_tso"] is True
        assert "id" not in c["disks"][0]
        assert si.put("vm.boot").status == 204
        info = si.get("vm.info").json()
        assert info["state"] == "Running"
        assert info["config"]["disks"][0]["id"] == "_disk0"
        assert info["config"]["net"][0]["id"] == "_net1"
        assert "_disk0" in info["device_tree"]
        assert si.put("vm.pause").status == 204
        assert si.get("vm.info").json()["state"] == "Paused"


def test_shutdown_keeps_config_and_reboots_in_place(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        assert si.put("vm.shutdown").status == 204
        info = si.get("vm.info").json()
        assert info["state"] == "Created" and "device_tree" not in info
        assert si.put("vm.boot").status == 204
        assert si.put("vm.reboot").status == 204
        assert si.get("vm.info").json()["state"] == "Running"
        assert si.put("vm.pause").status == 204
        assert si.put("vm.reboot").status == 204  # reboot from paused ends running
        assert si.get("vm.info").json()["state"] == "Running"
        assert si.get("vmm.ping").json()["pid"] == si.proc.pid
        ev = names(si.events())
        assert ev.count("vm/rebooting") == 2 and ev.count("vm/rebooted") == 2


def test_delete_is_idempotent(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.delete").status == 204
        booted(si, tmp_path)
        assert si.put("vm.delete").status == 204
        assert si.put("vm.delete").status == 204
        assert si.get("vm.info").status == 404
        assert si.put("vm.create", minimal_config(tmp_path)).status == 204
        ev = names(si.events())
        assert ev.count("vm/deleted") == 1
        i = ev.index("vm/deleted")
        assert ev[i - 1] == "vm/shutdown"


# ---- boot-time validation -------------------------------------------------------------------


@pytest.mark.parametrize("mutate,status,last", [
    (lambda c: c.pop("payload"), 400, "No bootitem provided: neither firmware nor kernel"),
    (lambda c: c["payload"].update(firmware=c["payload"]["kernel"]), 400,
     "Specifying a kernel is not supported when a firmware is provided"),
    (lambda c: c.update(cpus={"boot_vcpus": 4, "max_vcpus": 2}), 400,
     "Max CPUs (2) lower than boot CPUs (4)"),
    (lambda c: c.update(console={"mode": "File"}), 400,
     "Path missing when using file console mode"),
    (lambda c: c.update(disks=[{"path": "/x", "id": "a"}, {"path": "/y", "id": "a"}]), 409,
     "Identifier a is not unique"),
    (lambda c: c.update(disks=[{"path": "/x", "id": "__a"}]), 400, "Identifier __a is not valid"),
    (lambda c: c.update(memory={"size": 0}), 500, "No memory zones found"),
    (lambda c: c.update(memory={"size": 4097}), 500, "Memory configuration is not valid"),
    (lambda c: c.update(disks=[{"path": "/nonexistent/disk.img"}]), 500,
     "No such file or directory (os error 2)"),
    (lambda c: c["payload"].update(initramfs="/nonexistent/initrd"), 500,
     "No such file or directory (os error 2)"),
])
def test_boot_validation(tmp_path, mutate, status, last):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path)
        mutate(cfg)
        assert si.put("vm.create", cfg).status == 204  # create never validates
        r = si.put("vm.boot")
        assert r.status == status, r
        c = chain(r)
        assert c[:2] == ["Error from API", "The VM could not boot"] and c[-1] == last
        # Vm::new failed: no Vm kept, the config can be fixed by re-creating
        assert si.get("vm.info").json()["state"] == "Created"
        assert "vm/booted" not in names(si.events())
        assert si.put("vm.delete").status == 204
        assert si.put("vm.create", minimal_config(tmp_path)).status == 204
        assert si.put("vm.boot").status == 204


def test_missing_kernel_keeps_a_vm(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path)
        cfg["payload"]["kernel"] = str(tmp_path / "missing")
        assert si.put("vm.create", cfg).status == 204
        r = si.put("vm.boot")
        assert r.status == 500 and chain(r)[2] == "Cannot open kernel file"
        r = si.put("vm.boot")  # the Vm object survived: CH says it is already created
        assert r.status == 500 and chain(r)[2] == "VM is already created"
        assert si.get("vm.info").json()["state"] == "Created"
        assert si.put("vm.delete").status == 204


def test_missing_disk_drops_all_disks_from_the_config(tmp_path):
    """CH's make_virtio_block_devices() takes the list out of the config and
    returns early on error: the stored config has no disks any more."""
    with StandIn(tmp_path) as si:
        good = tmp_path / "good.img"
        good.write_bytes(b"\0" * 512)
        cfg = minimal_config(tmp_path, disks=[{"path": str(good)},
                                              {"path": str(tmp_path / "missing.img")}])
        assert si.put("vm.create", cfg).status == 204
        r = si.put("vm.boot")
        assert r.status == 500
        assert chain(r)[2:4] == ["Error from device manager", "Cannot open disk path"]
        assert "disks" not in si.get("vm.info").json()["config"]
        assert si.put("vm.boot").status == 204  # ... and boots without them


def test_ids_assigned_before_a_late_failure(tmp_path):
    with StandIn(tmp_path) as si:
        img = tmp_path / "a.img"
        img.write_bytes(b"\0" * 512)
        cfg = minimal_config(tmp_path, disks=[{"path": str(img)}], net=[{"id": "mynet"}, {}],
                             vsock={"cid": 3, "socket": str(tmp_path / "v.sock")})
        cfg["payload"]["kernel"] = str(tmp_path / "missing-kernel")
        assert si.put("vm.create", cfg).status == 204
        assert si.put("vm.boot").status == 500
        c = si.get("vm.info").json()["config"]
        assert [d["id"] for d in c["disks"]] == ["_disk0"]
        assert [n["id"] for n in c["net"]] == ["mynet", "_net1"]
        assert c["vsock"]["id"] == "_vsock2"


def test_firmware_drops_cmdline(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path)
        cfg["payload"] = {"firmware": cfg["payload"]["kernel"], "cmdline": "x"}
        assert si.put("vm.create", cfg).status == 204
        assert si.get("vm.info").json()["config"]["payload"]["cmdline"] == "x"
        assert si.put("vm.boot").status == 204
        assert "cmdline" not in si.get("vm.info").json()["config"]["payload"]


def test_disk_locks_between_instances(tmp_path):
    disk = tmp_path / "shared.img"
    disk.write_bytes(b"\0" * 4096)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with StandIn(tmp_path / "a") as a, StandIn(tmp_path / "b") as b:
        booted(a, tmp_path, disks=[{"path": str(disk)}])
        assert b.put("vm.create", minimal_config(tmp_path, disks=[{"path": str(disk)}])).status \
            == 204
        r = b.put("vm.boot")
        assert r.status == 500 and "lock" in chain(r)[2]
        assert a.put("vm.shutdown").status == 204
        assert b.put("vm.delete").status == 204
        assert b.put("vm.create", minimal_config(tmp_path, disks=[{"path": str(disk)}])).status \
            == 204
        assert b.put("vm.boot").status == 204


def test_console_file_created_at_create(tmp_path):
    with StandIn(tmp_path) as si:
        log = tmp_path / "console.log"
        log.write_text("old")
        cfg = minimal_config(tmp_path, console={"mode": "File", "file": str(log)})
        assert si.put("vm.create", cfg).status == 204
        assert log.read_text() == ""
        bad = minimal_config(tmp_path, serial={"mode": "File", "file": "/nonexistent/x"})
        assert si.put("vm.delete").status == 204
        r = si.put("vm.create", bad)
        assert r.status == 500 and chain(r)[2] == "Error creating console devices"
        assert si.get("vm.info").status == 200  # CH stored the config before failing


# ---- events ------------------------------------------------------------------------------------


def test_event_format(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.wait_event("virtio-device/activated")
        raw = open(si.ev_path).read()
        chunks = [c for c in raw.split("\n\n") if c]
        assert raw.endswith("\n\n")
        first = chunks[0]
        assert first.startswith('{\n  "timestamp": {\n    "secs": 0,\n    "nanos": ')
        assert first.endswith('  "source": "vmm",\n  "event": "starting",\n  "properties": null\n}')
        evs = [json.loads(c) for c in chunks]
        assert all(list(e) == ["timestamp", "source", "event", "properties"] for e in evs)
        ts = [e["timestamp"]["secs"] * 10**9 + e["timestamp"]["nanos"] for e in evs]
        assert ts == sorted(ts)
        assert names(evs)[:3] == ["vmm/starting", "vm/booting", "vm/booted"]
        act = [e for e in evs if e["event"] == "activated"]
        assert [e["properties"] for e in act] == [{"id": "__rng"}]  # console Off, no disks


def test_pause_resume_events_and_refusals(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.put("vm.pause")
        si.put("vm.pause")
        si.put("vm.resume")
        si.put("vm.resume")
        ev = [n for n in names(si.events()) if n.startswith("vm/") and "boot" not in n]
        assert ev == ["vm/pausing", "vm/paused", "vm/pausing", "vm/resuming", "vm/resumed",
                      "vm/resuming"]


def test_boot_without_config_still_emits_booting(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.boot").status == 404
        assert si.put("vm.reboot").status == 404
        assert names(si.events()) == ["vmm/starting", "vm/booting", "vm/rebooting"]


def test_event_delay_delivers_after_the_reply(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(
            tmp_path, cmdline="standin.event_delay_ms=300")).status == 204
        assert si.put("vm.boot").status == 204
        assert "vm/booted" not in names(si.events())  # reply first, events later
        evs = si.wait_event("vm/booted")
        assert names(evs)[:3] == ["vmm/starting", "vm/booting", "vm/booted"]
        si.signal(signal.SIGTERM)  # queued events are flushed at exit
        assert si.wait_exit() == 0
        assert names(si.events())[-1] == "vmm/shutdown"


def test_guest_console_output(tmp_path):
    con = tmp_path / "console.log"
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="console=hvc0 quiet",
               console={"mode": "File", "file": str(con)})
        text = con.read_text()
        assert "Linux version" in text and "Command line: console=hvc0 quiet" in text
        si.signal(signal.SIGUSR1)
        assert si.wait_exit() == 0
        assert con.read_text().endswith("reboot: Power down\n")
    (tmp_path / "tty").mkdir()
    with StandIn(tmp_path / "tty") as si:
        booted(si, tmp_path, console={"mode": "Tty"})  # Tty: CH's own stdout
        si.signal(signal.SIGTERM)
        assert si.wait_exit() == 0
        assert b"Linux version" in si.proc.stdout.read()


# ---- process lifetime ---------------------------------------------------------------------


def test_vmm_shutdown_events_and_exit(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        c = si.conn()
        r = c.request("PUT", "vmm.shutdown")
        assert r.status == 200 and r.body == b""
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]
        assert not os.path.exists(si.sock_path)


def test_power_button_powers_off_and_exits(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        assert si.put("vm.power-button").status == 204
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]
        assert not os.path.exists(si.sock_path)


def test_no_shutdown_keeps_the_vmm(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        booted(si, tmp_path)
        assert si.put("vm.power-button").status == 204
        si.wait_event("vm/shutdown")
        assert si.proc.poll() is None
        assert si.get("vm.info").json()["state"] == "Created"
        assert "vm/deleted" not in names(si.events())
        assert si.put("vm.boot").status == 204


def test_power_button_while_paused_waits_for_resume(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        booted(si, tmp_path)
        assert si.put("vm.pause").status == 204
        assert si.put("vm.power-button").status == 204
        time.sleep(0.2)
        assert "vm/shutdown" not in names(si.events())
        assert si.put("vm.resume").status == 204
        si.wait_event("vm/shutdown")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_sigint_exit_0(tmp_path, sig):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.signal(sig)
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]
        assert not os.path.exists(si.sock_path)


def test_sigterm_without_vm(tmp_path):
    with StandIn(tmp_path) as si:
        si.signal(signal.SIGTERM)
        assert si.wait_exit() == 0
        assert names(si.events()) == ["vmm/starting", "vmm/shutdown"]


def test_signal_guest_events(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        booted(si, tmp_path, pvpanic=True)
        si.signal(signal.SIGUSR2)
        si.wait_event("vm/rebooted")
        si.signal(signal.SIGRTMIN)
        si.wait_event("guest/panic")
        si.signal(signal.SIGUSR1)
        si.wait_event("vm/shutdown")
        assert si.proc.poll() is None
        si.signal(signal.SIGUSR1)  # no guest any more: ignored
        time.sleep(0.1)
        assert names(si.events()).count("vm/shutdown") == 1


def test_panic_needs_pvpanic(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.signal(signal.SIGRTMIN)
        time.sleep(0.2)
        assert "guest/panic" not in names(si.events())
        assert "no pvpanic device" in si.log()


def test_sigusr1_exits_without_no_shutdown(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        si.signal(signal.SIGUSR1)
        assert si.wait_exit() == 0


# ---- faults ------------------------------------------------------------------------------------


def test_fault_poweroff_after(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="console=hvc0 standin.poweroff_after_ms=100")
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]


def test_fault_timers_stop_while_paused(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        booted(si, tmp_path, cmdline="standin.poweroff_after_ms=200")
        assert si.put("vm.pause").status == 204
        time.sleep(0.4)
        assert "vm/shutdown" not in names(si.events())
        assert si.put("vm.resume").status == 204
        si.wait_event("vm/shutdown")


def test_fault_reboot_after(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.reboot_after_ms=50")
        si.wait_event("vm/rebooted", count=2)  # a guest that reboots every boot
        assert si.get("vm.info").json()["state"] == "Running"


def test_fault_panic_after(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.panic_after_ms=50", pvpanic=True)
        si.wait_event("guest/panic")


@pytest.mark.parametrize("no_shutdown", [False, True])
def test_fault_vcpu_error_exits_even_with_no_shutdown(tmp_path, no_shutdown):
    with StandIn(tmp_path, no_shutdown=no_shutdown) as si:
        booted(si, tmp_path, cmdline="standin.vcpu_error_after_ms=50")
        assert si.wait_exit() == 0
        assert names(si.events())[-3:] == ["vm/shutdown", "vm/deleted", "vmm/shutdown"]
        assert not os.path.exists(si.sock_path)


def test_fault_crash_after(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.crash_after_ms=100 standin.crash_signal=KILL")
        assert si.put("vm.pause").status == 204  # a VMM crash does not wait for the guest
        assert si.wait_exit() == -signal.SIGKILL
        assert names(si.events())[-1] == "vm/paused"


def test_call_racing_the_exit_gets_an_answer(tmp_path):
    """A request posted while the control loop exits is answered, not stuck."""
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.poweroff_after_ms=30")
        statuses = []
        deadline = time.monotonic() + 3
        while si.proc.poll() is None and time.monotonic() < deadline:
            try:
                statuses.append(si.get("vm.info").status)
            except (OSError, EOFError):
                break
        assert si.wait_exit(5) == 0
        assert all(s in (200, 500) for s in statuses)


def test_fault_ignore_power_button(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path, cmdline="standin.ignore_power_button=1 standin.acpi_delay_ms=10")
        assert si.put("vm.power-button").status == 204
        time.sleep(0.2)
        assert si.proc.poll() is None
        assert si.get("vm.info").json()["state"] == "Running"


def test_fault_boot_delay_serialises_the_api(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(
            tmp_path, cmdline="standin.boot_delay_ms=400")).status == 204
        booter = si.conn()
        t0 = time.monotonic()
        booter.send_raw(b"PUT /api/v1/vm.boot HTTP/1.1\r\n\r\n")
        time.sleep(0.05)
        r = si.get("vmm.ping")  # stuck behind the boot
        waited = time.monotonic() - t0
        assert r.status == 200 and waited >= 0.35
        assert booter.read_response().status == 204
        ev = names(si.events())
        assert ev.index("vm/booted") > ev.index("vm/booting")


def test_fault_api_delay(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(
            tmp_path, cmdline="standin.api_delay_ms=150")).status == 204
        t0 = time.monotonic()
        assert si.get("vm.info").status == 200
        assert time.monotonic() - t0 >= 0.14
        assert si.put("vm.delete").status == 204  # directives go with the config
        t0 = time.monotonic()
        assert si.get("vmm.ping").status == 200
        assert time.monotonic() - t0 < 0.14


@pytest.mark.parametrize("crash_signal,expect", [(None, -signal.SIGABRT),
                                                 ("KILL", -signal.SIGKILL),
                                                 ("SEGV", -signal.SIGSEGV)])
def test_fault_crash_on_boot(tmp_path, crash_signal, expect):
    with StandIn(tmp_path) as si:
        cmd = "standin.crash_on=pause,boot"
        if crash_signal:
            cmd += f" standin.crash_signal={crash_signal}"
        assert si.put("vm.create", minimal_config(tmp_path, cmdline=cmd)).status == 204
        c = si.conn()
        c.send_raw(b"PUT /api/v1/vm.boot HTTP/1.1\r\n\r\n")
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()
        rc = si.wait_exit()
        if os.environ.get("CH_STANDIN_SAN") and expect == -signal.SIGSEGV:
            assert rc != 0
        else:
            assert rc == expect
        assert names(si.events())[-1] == "vm/booting"
        assert os.path.exists(si.sock_path)  # a crash leaves the socket behind


def test_fault_hang_on(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(tmp_path,
                                                  cmdline="standin.hang_on=info")).status == 204
        c = si.conn(timeout=0.3)
        with pytest.raises(socket.timeout):
            c.request("GET", "vm.info")
        si.signal(signal.SIGTERM)  # a wedged control loop handles no signal
        with pytest.raises(subprocess.TimeoutExpired):
            si.wait_exit(0.3)
        si.signal(signal.SIGKILL)
        assert si.wait_exit() == -signal.SIGKILL


@pytest.mark.parametrize("mode", ["1", "late"])
def test_fault_fail_boot(tmp_path, mode):
    with StandIn(tmp_path) as si:
        cmd = f"standin.fail_boot={mode} standin.fail_boot_times=1"
        assert si.put("vm.create", minimal_config(tmp_path, cmdline=cmd)).status == 204
        r = si.put("vm.boot")
        assert r.status == 500 and "injected boot failure" in chain(r)[-1]
        r = si.put("vm.boot")
        if mode == "late":  # Vm kept: CH needs a shutdown/delete before booting again
            assert r.status == 500 and chain(r)[-1] == "VM is already created"
            assert si.put("vm.shutdown").status == 204
            r = si.put("vm.boot")
        assert r.status == 204


def test_faults_file_no_kvm(tmp_path):
    with StandIn(tmp_path, faults="no_kvm=1\n", wait=False) as si:
        assert si.wait_exit() == 1
        err = si.proc.stderr.read().decode()
        assert err == ("Error: Cloud Hypervisor exited with the following chain of errors:\n"
                       "  0: Failed to open hypervisor interface (is hypervisor interface "
                       "available?)\n  1: Failed to create the hypervisor\n"
                       "  2: no supported hypervisor\n")
        assert not os.path.exists(si.sock_path)
        assert not os.path.exists(si.ev_path)


def test_faults_file_exit_at_start(tmp_path):
    faults = "# start fails\nexit_at_start=3\nexit_message=boom: something broke\n"
    with StandIn(tmp_path, faults=faults, wait=False) as si:
        assert si.wait_exit() == 3
        assert si.proc.stderr.read() == b"boom: something broke\n"
        assert not os.path.exists(si.sock_path)


def test_faults_file_start_delay_and_defaults(tmp_path):
    faults = "start_delay_ms=300\nstandin.api_delay_ms=100\n"
    t0 = time.monotonic()
    with StandIn(tmp_path, faults=faults) as si:
        assert time.monotonic() - t0 >= 0.29
        t1 = time.monotonic()
        assert si.get("vmm.ping").status == 200
        assert time.monotonic() - t1 >= 0.09


def test_faults_file_next_to_socket_without_log_file(tmp_path):
    (tmp_path / "standin-faults").write_text("no_kvm=1\n")
    r = run(["--api-socket", f"path={tmp_path}/api.sock"])
    assert r.returncode == 1 and b"no supported hypervisor" in r.stderr


def test_faults_hang_at_start(tmp_path):
    with StandIn(tmp_path, faults="hang_on=start\n", wait=False) as si:
        time.sleep(0.3)
        assert si.proc.poll() is None and not os.path.exists(si.sock_path)


@pytest.mark.parametrize("api,codes", [("v54", (400, 409, 404, 404)),
                                       ("v53", (500, 500, 404, 500)),
                                       ("v50", (500, 500, 500, 500))])
def test_status_code_versions(tmp_path, api, codes):
    with StandIn(tmp_path, faults=f"api={api}\n") as si:
        cfg = minimal_config(tmp_path)
        cfg.pop("payload")
        si.put("vm.create", cfg)
        validation = si.put("vm.boot").status
        si.put("vm.delete")
        si.put("vm.create", minimal_config(tmp_path, disks=[{"path": "/a", "id": "x"},
                                                            {"path": "/b", "id": "x"}]))
        conflict = si.put("vm.boot").status
        si.put("vm.delete")
        not_created = si.get("vm.info").status
        si.put("vm.create", minimal_config(tmp_path))
        no_device = si.put("vm.remove-device", {"id": "nope"}).status
        assert (validation, conflict, not_created, no_device) == codes


# ---- devices -----------------------------------------------------------------------------


def held_pipes(pid, *fds):
    """How many fds of process pid point at the pipes behind our fds."""
    want = {f"pipe:[{os.fstat(fd).st_ino}]" for fd in fds}
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in want:
                n += 1
        except FileNotFoundError:
            pass
    return n


def test_add_net_with_fds_cold_and_hot(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(tmp_path)).status == 204
        r1, w1 = os.pipe()
        c = si.conn()
        r = c.request("PUT", "vm.add-net", {"mac": "12:34:56:78:90:ab", "fds": [99]},
                      fds=[r1, w1])
        assert r.status == 204  # cold plug
        net = si.get("vm.info").json()["config"]["net"][0]
        assert len(net["fds"]) == 2 and 99 not in net["fds"]
        assert held_pipes(si.proc.pid, r1) == 2  # both ends of the pipe are held
        assert si.put("vm.boot").status == 204
        r2, w2 = os.pipe()
        r = c.request("PUT", "vm.add-net", {"id": "hot0"}, fds=[r2])
        assert r.status == 200 and r.json()["id"] == "hot0"
        assert r.json()["bdf"].startswith("0000:00:")
        assert held_pipes(si.proc.pid, r2) == 1
        r = c.request("PUT", "vm.add-net", {"id": "hot0"}, fds=[w2])
        assert r.status == 409 and chain(r)[-1] == "Identifier hot0 is not unique"
        assert held_pipes(si.proc.pid, r2) == 1  # the refused request's fd was closed
        assert si.put("vm.remove-device", {"id": "hot0"}).status == 204
        assert held_pipes(si.proc.pid, r2) == 0
        r = c.request("GET", "vm.info", fds=[r2])  # fds on other calls are dropped
        assert r.status == 200 and held_pipes(si.proc.pid, r2) == 0
        assert si.put("vm.delete").status == 204
        assert held_pipes(si.proc.pid, r1) == 0
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_add_disk_and_remove_device(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.add-disk", {"path": "/x"}).status == 404
        assert si.put("vm.create", minimal_config(tmp_path)).status == 204
        assert si.put("vm.add-disk", {"path": "/nonexistent"}).status == 204  # cold: no check
        r = si.put("vm.remove-device", {"id": "nope"})
        assert r.status == 404 and chain(r)[-1] == 'No device with id "nope" to remove'
        si.put("vm.delete")
        img = tmp_path / "hot.img"
        img.write_bytes(b"\0" * 512)
        booted(si, tmp_path)
        r = si.put("vm.add-disk", {"path": str(img)})
        assert r.status == 200 and r.json()["id"].startswith("_disk")
        r = si.put("vm.add-disk", {"path": "/nonexistent"})
        assert r.status == 500
        r = si.put("vm.remove-device", {"id": "nope"})
        assert r.status == 404 and "Failed to find device" in chain(r)[-1]
        did = si.get("vm.info").json()["config"]["disks"][0]["id"]
        assert si.put("vm.remove-device", {"id": did}).status == 204
        assert "disks" not in si.get("vm.info").json()["config"] or \
            si.get("vm.info").json()["config"]["disks"] == []
        assert si.put("vm.remove-device", {}).status == 400


def test_resize(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.resize", {"desired_vcpus": 2}).status == 404
        cfg = minimal_config(tmp_path)
        cfg["cpus"] = {"boot_vcpus": 1, "max_vcpus": 4}
        assert si.put("vm.create", cfg).status == 204
        assert si.put("vm.resize", {"desired_vcpus": 2}).status == 204
        assert si.get("vm.info").json()["config"]["cpus"]["boot_vcpus"] == 2
        assert si.put("vm.boot").status == 204
        assert si.put("vm.resize", {"desired_vcpus": 3}).status == 204
        assert si.put("vm.resize", {"desired_vcpus": 8}).status == 500
        assert si.put("vm.resize", {"desired_vcpus": "x"}).status == 400
        assert "vm/resized" in names(si.events())


def test_counters(tmp_path):
    with StandIn(tmp_path) as si:
        img = tmp_path / "c.img"
        img.write_bytes(b"\0" * 512)
        booted(si, tmp_path, disks=[{"path": str(img)}])
        body = si.get("vm.counters").json()
        assert "_disk0" in body and body["_disk0"]["read_bytes"] == 0


def test_unsupported_endpoints_answer_like_ch(tmp_path):
    with StandIn(tmp_path) as si:
        r = si.put("vm.snapshot", {"destination_url": "file:///tmp/x"})
        assert r.status == 500 and chain(r)[-1] == "VM is not running"
        r = si.put("vm.restore", {"source_url": "file:///tmp/x"})
        assert r.status == 500
        r = si.put("vm.resize-zone", {"id": "z", "desired_ram": 1})
        assert r.status == 404
        r = si.put("vm.snapshot", {})
        assert r.status == 400 and "missing field `destination_url`" in chain(r)[1]


def test_no_leftover_processes_or_sockets(tmp_path):
    with StandIn(tmp_path) as si:
        pid = si.proc.pid
    assert not os.path.exists(f"/proc/{pid}") or \
        open(f"/proc/{pid}/stat").read().split()[2] == "Z"
