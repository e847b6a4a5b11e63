"""chcpctl wait and watch against a real daemon: waiting with success, with
a timeout, for deletion, across a daemon restart, giving up on crashed VMs;
watch's event lines and JSON events; both end cleanly on SIGINT.

Guest-driven changes come from the stand-in's cmdline directives
(standin.poweroff_after_ms, standin.crash_after_ms). Nothing here depends on
timing: a test that must act after a background chcpctl has looked at the
daemon waits for the daemon's own request counter (/metrics) or for the
watch's output line, not for a sleep."""

import json
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import Ctl, chcpctl_bin, delete_all_vms
from harness import Daemon, base_env, wait_for

_spawned = []


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Background chcpctl processes never outlive their test, even a failed one."""
    yield
    while _spawned:
        p = _spawned.pop()
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def spawn(ctl, *args):
    """chcpctl in the background (its output in pipes)."""
    argv = [chcpctl_bin(), "--endpoint", ctl.endpoint] + [str(a) for a in args]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=base_env(), stdin=subprocess.DEVNULL)
    _spawned.append(p)
    return p


def rpc_count(daemon, method):
    """How many calls of `method` the daemon has finished (its /metrics)."""
    _, _, body = daemon.http("GET", "/metrics")
    total = 0
    for line in body.decode().splitlines():
        if line.startswith("rpc_server_requests_total{") and 'method="%s"' % method in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def after_calls(daemon, method, n, since):
    """Block until the daemon finished n more calls of `method` than `since`."""
    assert wait_for(lambda: rpc_count(daemon, method) >= since + n, timeout=60), \
        "the daemon never saw %d %s call(s)" % (n, method)


class Lines:
    """A background process's stdout, line by line, with a timeout."""

    def __init__(self, p):
        self.q = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, args=(p.stdout,), daemon=True).start()

    def _pump(self, f):
        for line in f:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def rest(self, timeout=30):
        """Every remaining line, once the process has closed its stdout."""
        got = []
        while True:
            line = self.q.get(timeout=timeout)
            if line is None:
                return got
            got.append(line)
            self.seen.append(line)

    def until(self, pred, timeout=60):
        """Lines up to and including the first for which pred is true."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "output ended before the expected line: %r" % got
            got.append(line)
            self.seen.append(line)
            if pred(line):
                return got


def finish_lines(p, lines, timeout=30):
    """finish() for a process whose stdout a Lines reads."""
    rc = p.wait(timeout=timeout)
    err = p.stderr.read()
    assert "Sanitizer" not in err and "runtime error" not in err, err
    return rc, lines.rest(), err


def finish(p, timeout=30):
    out, err = p.communicate(timeout=timeout)
    assert "Sanitizer" not in err and "runtime error" not in err, err
    return p.returncode, out, err


def test_wait_until_guest_powers_off(uctl):
    d = uctl.daemon
    uctl.ok("create", "w-1", "--kernel", d.kernel, "--cmdline", "standin.poweroff_after_ms=700",
            "--boot")
    r = uctl.ok("wait", "w-1", "--for", "shutdown", "--timeout", "60s")
    assert r.stdout == "w-1: shutdown\n"
    # Already there: answers at once, in JSON too.
    doc = json.loads(uctl.ok("-o", "json", "wait", "w-1", "--for", "paused,shutdown").stdout)
    assert doc["vmId"] == "w-1" and doc["state"] == "VM_STATE_SHUTDOWN"
    assert doc["stateReason"]  # the guest powered off by itself: the daemon says so


def test_wait_timeout_exit_6(uctl):
    uctl.ok("create", "w-2", "--kernel", uctl.daemon.kernel, "--boot")
    t0 = time.monotonic()
    r = uctl.fails(6, "wait", "w-2", "--for", "paused", "-t", "700ms")
    assert time.monotonic() - t0 >= 0.7
    assert r.stderr == "chcpctl: wait w-2 --for paused: VM w-2 is still running after 700ms " \
                       "(deadline_exceeded)\n"
    assert r.stdout == ""


def test_wait_for_missing_vm(uctl):
    t0 = time.monotonic()
    r = uctl.fails(3, "wait", "ghost", "--for", "running", "--timeout", "1h")
    assert "VM ghost not found" in r.stderr  # an answer, not a timeout
    assert time.monotonic() - t0 < 600
    assert uctl.ok("wait", "ghost", "--for", "deleted").stdout == "ghost: deleted\n"
    assert json.loads(uctl.ok("-o", "json", "wait", "ghost", "--for", "deleted").stdout) == \
        {"vmId": "ghost"}


def test_wait_for_deletion_and_deleted_while_waiting(uctl):
    d = uctl.daemon
    uctl.ok("create", "w-3", "--kernel", d.kernel)
    uctl.ok("create", "w-4", "--kernel", d.kernel)
    before = rpc_count(d, "GetVmInfo")
    gone = spawn(uctl, "wait", "w-3", "--for", "deleted", "--timeout", "60s")
    other = spawn(uctl, "wait", "w-4", "--for", "running", "--timeout", "60s")
    after_calls(d, "GetVmInfo", 2, before)  # both have seen their VM
    uctl.ok("delete", "w-3", "w-4")
    rc, out, err = finish(gone)
    assert (rc, out, err) == (0, "w-3: deleted\n", "")
    rc, out, err = finish(other)
    assert rc == 3 and "VM w-4 was deleted while waiting" in err


def test_wait_gives_up_on_crashed_vm_exit_4(uctl):
    uctl.ok("create", "w-5", "--kernel", uctl.daemon.kernel, "--cmdline",
            "standin.crash_after_ms=300", "--boot")
    r = uctl.fails(4, "wait", "w-5", "--for", "paused", "--timeout", "30s")
    assert re.search(r"VM w-5 is crashed.*; it will not get there \(failed_precondition\)", r.stderr)
    # Waiting for the crash itself works.
    assert uctl.ok("wait", "w-5", "--for", "crashed").stdout == "w-5: crashed\n"


def test_wait_interrupted_exit_130(uctl):
    uctl.ok("create", "w-6", "--kernel", uctl.daemon.kernel)
    before = rpc_count(uctl.daemon, "GetVmInfo")
    p = spawn(uctl, "wait", "w-6", "--for", "running", "--timeout", "0")
    after_calls(uctl.daemon, "GetVmInfo", 1, before)  # it is waiting
    p.send_signal(signal.SIGINT)
    rc, out, err = finish(p, timeout=10)
    assert rc == 130 and "interrupted (canceled)" in err


def test_wait_survives_a_daemon_restart(start_daemon):
    d1 = start_daemon(vmm=True)
    ctl = Ctl("unix://" + d1.unix_socket)
    ctl.ok("create", "w-7", "--kernel", d1.kernel, "--cmdline", "standin.poweroff_after_ms=2500",
           "--boot")
    before = rpc_count(d1, "GetVmInfo")
    p = spawn(ctl, "wait", "w-7", "--for", "shutdown", "--timeout", "120s")
    after_calls(d1, "GetVmInfo", 1, before)
    d1.stop()
    # A new daemon on the same state directory and socket; the VM kept running.
    d2 = Daemon(env={"CHCP_STATE_DIR": d1.state_dir, "CHCP_UNIX_SOCKET": d1.unix_socket,
                     "CHCP_IMAGE_DIRS": d1.image_dir, "CHCP_CH_BINARY": d1.env["CHCP_CH_BINARY"]})
    d2.unix_socket = d1.unix_socket
    try:
        d2.start()
        rc, out, err = finish(p, timeout=60)
        assert (rc, out, err) == (0, "w-7: shutdown\n", "")
    finally:
        try:
            if d2.proc and d2.proc.poll() is None:
                delete_all_vms(d2)
                d2.stop()
        finally:
            d2.cleanup()


# ---- watch ---------------------------------------------------------------------------------------

def test_watch_json_events(uctl):
    d = uctl.daemon
    uctl.ok("create", "x-0", "--kernel", d.kernel)
    p = spawn(uctl, "-o", "json", "watch", "--interval", "100ms")
    out = Lines(p)
    event = lambda line: json.loads(line)  # noqa: E731
    is_ = lambda kind, vm, state=None: lambda line: (  # noqa: E731
        event(line)["type"] == kind and event(line)["vm"]["vmId"] == vm
        and (state is None or event(line)["vm"].get("state") == state))
    out.until(is_("ADDED", "x-0", "VM_STATE_CREATED"))
    uctl.ok("create", "x-1", "--kernel", d.kernel)
    out.until(lambda l: is_("ADDED", "x-1", "VM_STATE_CREATED")(l)
              or is_("CHANGED", "x-1", "VM_STATE_CREATED")(l))
    uctl.ok("boot", "x-1")
    out.until(is_("CHANGED", "x-1", "VM_STATE_RUNNING"))
    uctl.ok("delete", "x-1")
    out.until(is_("DELETED", "x-1", "VM_STATE_RUNNING"))  # as last seen
    p.send_signal(signal.SIGINT)
    rc, rest, err = finish_lines(p, out)
    assert (rc, rest, err) == (0, [], "")
    events = [(e["type"], e["vm"]["vmId"], e["vm"].get("state")) for e in map(event, out.seen)]
    assert events[0] == ("ADDED", "x-0", "VM_STATE_CREATED")
    x1 = events[1:]
    assert all(e[1] == "x-1" for e in x1), events  # nothing happened to x-0
    # Polling sees a subsequence of what happened (CREATING may be caught), in order.
    assert x1[0][0] == "ADDED" and all(e[0] == "CHANGED" for e in x1[1:-1])
    order = ["VM_STATE_CREATING", "VM_STATE_CREATED", "VM_STATE_RUNNING"]
    states = [e[2] for e in x1[:-1]]
    assert states == sorted(states, key=order.index) and len(set(states)) == len(states)


def test_watch_count(uctl):
    d = uctl.daemon
    uctl.ok("create", "c-0", "--kernel", d.kernel)
    uctl.ok("create", "c-1", "--kernel", d.kernel)
    rc, out, err = finish(spawn(uctl, "-o", "json", "watch", "--count", "2"))
    assert rc == 0 and [json.loads(l)["vm"]["vmId"] for l in out.splitlines()] == ["c-0", "c-1"]


def test_watch_text_named_vms_until_interrupted(uctl):
    d = uctl.daemon
    uctl.ok("create", "y-1", "--kernel", d.kernel)
    uctl.ok("create", "y-2", "--kernel", d.kernel)
    p = spawn(uctl, "watch", "y-1", "--interval", "100ms")
    out = Lines(p)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    first = out.until(lambda l: True)
    assert re.fullmatch(stamp + r"  added    y-1 +created", first[0]), first
    uctl.ok("boot", "y-2")  # not watched
    uctl.ok("boot", "y-1")
    second = out.until(lambda l: l.endswith(" running"))
    # A poll may also catch the short BOOTING state on the way.
    for line in second:
        assert re.fullmatch(stamp + r"  changed  y-1 +(booting|running)", line), second
    p.send_signal(signal.SIGINT)
    rc, rest, err = finish_lines(p, out)
    assert (rc, rest, err) == (0, [], "")  # interrupting is how a watch ends; nothing about y-2


def test_watch_label_filter(uctl):
    d = uctl.daemon
    p = spawn(uctl, "-o", "json", "watch", "-l", "team=a", "--interval", "100ms", "--count", "1")
    time.sleep(0.5)
    uctl.ok("create", "z-1", "--kernel", d.kernel, "-l", "team=b")
    time.sleep(0.5)
    uctl.ok("create", "z-2", "--kernel", d.kernel, "-l", "team=a")
    rc, out, err = finish(p)
    assert rc == 0 and [json.loads(l)["vm"]["vmId"] for l in out.splitlines()] == ["z-2"]


def test_watch_unreachable_daemon_fails_at_once(ctl, refused_port):
    r = ctl.fails(5, "--endpoint", "127.0.0.1:%d" % refused_port, "watch")
    assert "Connection refused" in r.stderr
