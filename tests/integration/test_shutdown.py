"""Graceful shutdown: in-flight requests finish, the deadline is kept, a
second signal exits at once, systemd is told, nothing is left behind."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

from harness import wait_for


def slow_get(daemon, ms, results):
    """GET /_test/sleep?ms=N on its own connection, in a thread."""
    def run():
        try:
            results.append(daemon.http("GET", "/_test/sleep?ms=%d" % ms, timeout=30))
        except Exception as e:  # noqa: BLE001 - the test inspects it
            results.append(e)
    t = threading.Thread(target=run)
    t.start()
    return t


def wait_in_flight(daemon, n=1):
    """Wait until the daemon has started n slow requests (it logs each)."""
    assert wait_for(
        lambda: sum("test hook: sleeping" in r["msg"] for r in daemon.log_records()) >= n, 10
    ), daemon.output()


def test_sigterm_idle_exits_0_quickly(start_daemon):
    d = start_daemon()
    # Idle keep-alive connections must not hold shutdown up.
    conns = []
    for _ in range(3):
        c = d.connection()
        c.request("GET", "/health")
        assert c.getresponse().read() == b"ok"
        conns.append(c)
    # And an idle HTTP/2 connection: preface + SETTINGS, then silence.
    h2 = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    h2.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    assert h2.recv(9)[3] == 0x04  # the server's SETTINGS
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 2.0
    d.stop()  # checks exit 0 and no sanitizer report
    for c in conns:
        c.close()
    h2.close()
    msgs = [r["msg"] for r in d.log_records()]
    assert any("shutting down" in m for m in msgs), msgs
    assert msgs[-1] == "chcp-api stopped"


def test_sigint_also_graceful(start_daemon):
    d = start_daemon()
    d.signal(signal.SIGINT)
    assert d.wait(timeout=10) == 0


def test_in_flight_request_completes(start_daemon):
    d = start_daemon(env={"CHCP_TEST_HOOKS": "1", "CHCP_SHUTDOWN_TIMEOUT_MS": "10000"})
    results = []
    t = slow_get(d, 1500, results)
    wait_in_flight(d)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    # New connections are refused once shutdown has begun.
    def refused():
        try:
            socket.create_connection(("127.0.0.1", d.port), timeout=1).close()
            return False
        except OSError:
            return True
    assert wait_for(refused, 2.0)
    t.join(20)
    assert results and not isinstance(results[0], Exception), results
    status, _, body = results[0]
    assert (status, body) == (200, b"slept")
    assert d.wait(timeout=10) == 0
    elapsed = time.monotonic() - t0
    assert 0.2 < elapsed < 5.0, elapsed  # waited for the request, not for the timeout
    d.stop()


def test_in_flight_h2_request_completes(start_daemon):
    """The same over HTTP/2 (h2c): the stream finishes, then the daemon exits."""
    d = start_daemon(env={"CHCP_TEST_HOOKS": "1"})
    curl = subprocess.Popen(
        ["curl", "-sS", "--http2-prior-knowledge", "-w", "\\n%{http_version} %{http_code}",
         d.base_url + "/_test/sleep?ms=1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_in_flight(d)
        d.signal(signal.SIGTERM)
        out, err = curl.communicate(timeout=20)
    finally:
        if curl.poll() is None:
            curl.kill()
    assert out == "slept\n2 200", (out, err)
    assert d.wait(timeout=10) == 0


def test_shutdown_timeout_cuts_in_flight(start_daemon):
    d = start_daemon(env={"CHCP_TEST_HOOKS": "1", "CHCP_SHUTDOWN_TIMEOUT_MS": "500"})
    results = []
    t = slow_get(d, 20000, results)
    wait_in_flight(d)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=10) == 0
    elapsed = time.monotonic() - t0
    assert 0.4 < elapsed < 3.0, elapsed
    t.join(10)
    # The client saw its connection end without a 200.
    assert results and (isinstance(results[0], Exception) or results[0][0] != 200), results
    d.stop()
    assert any(r["level"] == "warn" and "shutdown timeout" in r["msg"] for r in d.log_records())


def test_health_503_while_draining(start_daemon):
    """A request that arrives on a busy connection after SIGTERM: /health
    says 503 so load balancers stop sending work to a draining instance."""
    d = start_daemon(env={"CHCP_TEST_HOOKS": "1"})
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    try:
        s.sendall(b"GET /_test/sleep?ms=800 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_in_flight(d)
        d.signal(signal.SIGTERM)
        assert wait_for(lambda: any("shutting down" in r["msg"] for r in d.log_records()), 5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    first, _, rest = data.partition(b"slept")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 503 "), data
    assert rest.endswith(b"\r\n\r\nshutting down"), data
    assert d.wait(timeout=10) == 0


def test_second_signal_exits_at_once(start_daemon):
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        d = start_daemon(env={"CHCP_TEST_HOOKS": "1", "CHCP_SHUTDOWN_TIMEOUT_MS": "30000"})
        results = []
        t = slow_get(d, 20000, results)
        wait_in_flight(d)
        d.signal(sig)
        assert wait_for(lambda: any("shutting down" in r["msg"] for r in d.log_records()), 5)
        t0 = time.monotonic()
        d.signal(sig)
        assert d.wait(timeout=5) == code
        assert time.monotonic() - t0 < 2.0
        d.exit_checked = True
        t.join(10)
        assert any("exiting immediately" in r["msg"] for r in d.log_records())


def test_sd_notify_ready_and_stopping(start_daemon, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        d = start_daemon(env={"NOTIFY_SOCKET": path})
        assert b"READY=1" in sock.recv(4096)
        d.signal(signal.SIGTERM)
        assert b"STOPPING=1" in sock.recv(4096)
        assert d.wait(timeout=10) == 0
    finally:
        sock.close()


def test_unix_socket_removed_after_exit(start_daemon, tmp_path):
    d = start_daemon()
    assert os.stat(d.unix_socket).st_mode & 0o777 == 0o660
    d.stop()
    assert not os.path.exists(d.unix_socket)


def test_stale_unix_socket_replaced(start_daemon, tmp_path):
    """A socket file left by a crashed daemon does not block a restart."""
    path = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays, nobody listens
    d = start_daemon(env={"CHCP_UNIX_SOCKET": path})
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert c.recv(4096).startswith(b"HTTP/1.1 200")
    c.close()
    d.stop()
    assert not os.path.exists(path)


def test_sigpipe_ignored(start_daemon):
    """Clients that vanish mid-response must not kill the daemon: many
    pipelined requests on the Unix socket, then close without reading, so
    the daemon's response writes hit a closed peer (EPIPE)."""
    d = start_daemon(env={"CHCP_LOG_LEVEL": "info"})
    for _ in range(3):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(d.unix_socket)
        # The daemon stops reading while its answers go unread, so sending
        # can block: give up after a moment, then close.
        c.settimeout(1.0)
        try:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 20000)
        except OSError:
            pass  # timeout, or the daemon closed first: either way it must survive
        c.close()
        time.sleep(0.2)
        assert d.proc.poll() is None, "daemon died: %s" % d.proc.returncode
    assert d.http("GET", "/health")[0] == 200


def connect_call(d, method, request, timeout=30):
    status, _, body = d.http("POST", "/cloudhypervisor.v1.VmService/" + method,
                             body=json.dumps(request).encode(),
                             headers={"content-type": "application/json"}, timeout=timeout)
    return status, json.loads(body)


def test_in_flight_boot_completes(start_daemon):
    """A real slow call: BootVm on a VMM that takes 1.5 s to boot (a
    stand-in directive) is answered before the daemon exits 0."""
    d = start_daemon(vmm=True)
    status, res = connect_call(d, "CreateVm", {
        "vmId": "slow-boot",
        "config": {"payload": {"kernel": d.kernel, "cmdline": "console=hvc0 standin.boot_delay_ms=1500"},
                   "memory": {"size": "67108864"}}})
    assert status == 200, res
    results = []

    def boot():
        try:
            results.append(connect_call(d, "BootVm", {"vmId": "slow-boot"}))
        except Exception as e:  # noqa: BLE001 - the test inspects it
            results.append(e)
    t = threading.Thread(target=boot)
    t.start()
    # BootVm is now waiting on the VMM.
    assert wait_for(lambda: any("-> BOOTING" in r["msg"] for r in d.log_records()), 10), d.output()
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    t.join(30)
    assert results and not isinstance(results[0], Exception), results
    status, res = results[0]
    assert status == 200, res
    assert res["vm"]["state"] == "VM_STATE_RUNNING"
    assert d.wait(timeout=20) == 0
    assert time.monotonic() - t0 > 0.5  # it waited for the boot
    d.stop()
    assert any("finishing 1 in-flight" in r["msg"] for r in d.log_records()), d.output()
    # Durable state: the VMM outlives the daemon; end it by pid.
    pids = subprocess.run(["pgrep", "-f", d.tmp.name], capture_output=True, text=True).stdout
    assert len(pids.split()) == 1, pids
    for pid in pids.split():
        os.kill(int(pid), signal.SIGKILL)


def test_shutdown_timeout_with_vmm_call_in_flight(start_daemon):
    """The deadline passes while BootVm waits on a slow VMM: the call is
    cancelled, the VMM stopped, and the daemon still exits 0, leak-free."""
    d = start_daemon(vmm=True, env={"CHCP_SHUTDOWN_TIMEOUT_MS": "500"})
    status, res = connect_call(d, "CreateVm", {
        "vmId": "very-slow-boot",
        "config": {"payload": {"kernel": d.kernel, "cmdline": "console=hvc0 standin.boot_delay_ms=20000"},
                   "memory": {"size": "67108864"}}})
    assert status == 200, res
    results = []

    def boot():
        try:
            results.append(connect_call(d, "BootVm", {"vmId": "very-slow-boot"}))
        except Exception as e:  # noqa: BLE001 - the test inspects it
            results.append(e)
    t = threading.Thread(target=boot)
    t.start()
    assert wait_for(lambda: any("-> BOOTING" in r["msg"] for r in d.log_records()), 10), d.output()
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=20) == 0
    assert time.monotonic() - t0 < 10
    t.join(10)
    assert results and (isinstance(results[0], Exception) or results[0][0] != 200), results
    d.stop()
    # Durable state (docs/durability.md): the VMM outlives the daemon, which
    # re-adopts it at its next start. This test ends here: stop it by pid.
    out = subprocess.run(["pgrep", "-f", d.tmp.name], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    assert len(pids) == 1, out
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def test_sigterm_does_not_wait_for_a_hung_vmm(start_daemon):
    """Durable state: SIGTERM leaves VMMs running instead of stopping them,
    so a VMM that would hang on shutdown cannot trap the operator: the daemon
    exits 0 at once and the VMM is still there (re-adopted at the next
    start)."""
    d = start_daemon(vmm=True)
    status, res = connect_call(d, "CreateVm", {
        "vmId": "hangs-on-stop",
        "config": {"payload": {"kernel": d.kernel,
                               "cmdline": "console=hvc0 standin.hang_on=vmm.shutdown,vm.shutdown"},
                   "memory": {"size": "67108864"}}})
    assert status == 200, res
    assert connect_call(d, "BootVm", {"vmId": "hangs-on-stop"})[0] == 200
    try:
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 3.0
        assert not any("-> DELETING" in r["msg"] for r in d.log_records()), d.output()
        pids = subprocess.run(["pgrep", "-f", d.tmp.name], capture_output=True, text=True).stdout
        assert len([p for p in pids.split() if int(p) != d.proc.pid]) == 1, pids
    finally:
        # The VMM outlives the daemon by design; it is ours (its arguments
        # name our temp dir): end it by pid.
        pids = subprocess.run(["pgrep", "-f", d.tmp.name], capture_output=True, text=True).stdout
        for pid in pids.split():
            if int(pid) != d.proc.pid:
                os.kill(int(pid), signal.SIGKILL)
