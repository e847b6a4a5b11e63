"""Stand-in tests: command line, API socket handling and micro_http wire format.

Run by `make standin-test`; expectations are CH's behaviour at the modelled
version (README.md), so drift from CH fails here.
"""

import json
import os
import signal
import socket
import time

import pytest

from chclient import Conn, StandIn, chain, minimal_config, names, read_events, run


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


def test_help():
    r = run(["--help"])
    assert r.returncode == 0 and b"--api-socket" in r.stdout


def test_without_api_socket_only_signals_work(tmp_path):
    ev = tmp_path / "ev"
    with StandIn(tmp_path, args=["--event-monitor", f"path={ev}"]) as si:
        deadline = time.monotonic() + 10
        while (not ev.exists() or "starting" not in ev.read_text()) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(p.suffix == ".sock" for p in tmp_path.iterdir())
        si.signal(signal.SIGTERM)
        assert si.wait_exit() == 0
        assert names(read_events(str(ev))) == ["vmm/starting", "vmm/shutdown"]


def test_igvm_is_not_a_boot_item_in_default_builds(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path)
        cfg["payload"] = {"igvm": cfg["payload"]["kernel"]}
        assert si.put("vm.create", cfg).status == 204
        assert "igvm" not in si.get("vm.info").json()["config"]["payload"]
        r = si.put("vm.boot")
        assert r.status == 400 and chain(r)[-1] == ("No bootitem provided: neither firmware "
                                                    "nor kernel")


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


def test_one_kib_line_limit(tmp_path):
    with StandIn(tmp_path) as si:
        c = si.conn()
        c.send_raw(b"GET /api/v1/vmm.ping HTTP/1.1\r\nX-Pad: " + b"a" * 1000 + b"\r\n\r\n")
        assert c.read_response().status == 200  # a 1 KiB header line still fits
        c.send_raw(b"GET /api/v1/vmm.ping HTTP/1.1\r\nX-Pad: " + b"a" * 1100 + b"\r\n\r\n")
        r = c.read_response()
        assert r.status == 400 and r.headers["server"] == "Firecracker API"
        c2 = si.conn()
        c2.send_raw(b"GET /api/v1/" + b"x" * 1100 + b" HTTP/1.1\r\n\r\n")
        assert b"Invalid request." in c2.read_response().body


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
        r = si.put("vm.create", {"cpus": {"boot_vcpus": 1, "max_vcpus": 1, "nested": None}})
        assert chain(r)[1] == "invalid type: null, expected a boolean"
        r = si.put("vm.create", {"cpus": {"boot_vcpus": -1, "max_vcpus": 1}})
        assert chain(r)[1] == "invalid value: integer `-1`, expected u32"
        r = si.put("vm.create", {"net": [{"queue_size": 70000}]})
        assert chain(r)[1] == "invalid value: integer `70000`, expected u16"
        r = si.put("vm.create", [])
        assert "expected struct VmConfig" in chain(r)[1]
        assert si.get("vm.info").status == 404  # nothing stored
        r = si.put("vm.create", {"payload": None, "disks": None, "balloon": None})
        assert r.status == 204  # Option fields accept null
        assert si.put("vm.delete").status == 204
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
        conns[0].close()  # a slot frees up once the server has seen the close
        deadline = time.monotonic() + 2
        while True:
            try:
                status = si.get("vmm.ping").status
            except (EOFError, ConnectionResetError):
                status = None
            if status == 200:
                break
            assert status in (None, 503) and time.monotonic() < deadline
            time.sleep(0.02)


def test_half_close_drops_the_connection(tmp_path):
    with StandIn(tmp_path) as si:
        # Keep the (single) HTTP thread busy so the request and the half-close
        # are seen together, as micro_http would see them.
        assert si.put("vm.create", minimal_config(
            tmp_path, cmdline="standin.boot_delay_ms=800")).status == 204
        busy = si.conn()
        busy.send_raw(b"PUT /api/v1/vm.boot HTTP/1.1\r\n\r\n")
        si.wait_event("vm/booting")  # the HTTP thread is now blocked on the boot
        c = si.conn()
        c.send_raw(b"GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        assert busy.read_response().status == 204
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
