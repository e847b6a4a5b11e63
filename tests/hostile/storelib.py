"""storelib.py - what the durable-state tests (test_store_*.py) share: a
chcp-api that keeps its state directory across restarts, optionally under a
given RLIMIT_NOFILE, ways to look at its VMMs from the outside, and the
`state_daemon` fixture (import it into the test module). At teardown every
VMM still running under a daemon's directory is killed: VMMs outlive
chcp-api by design, so nothing else would.

What the tests assert is docs/durability.md: no VM is lost or killed because
the store is damaged, missing or deleted under the daemon.
"""

import http.client
import json
import os
import resource
import signal
import subprocess
import time

import pytest

from harness import START_TIMEOUT_S, Daemon, base_env, chcp_bin

SERVICE = "/cloudhypervisor.v1.VmService/"


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


def light_standin():
    """A stand-in built without sanitizers (1.7 MB RSS instead of 8 MB), for
    the tests that run hundreds of VMs: make builds it and names it in
    $CHCP_STANDIN_LIGHT."""
    path = os.environ.get("CHCP_STANDIN_LIGHT", "")
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("CHCP_STANDIN_LIGHT=%r is not an executable stand-in: run the suite "
                             "through make (it builds build/standin-light)" % path)
    return path


class StateDaemon(Daemon):
    """A Daemon over one state directory that survives restarts.

    `nofile` = (soft, hard) sets RLIMIT_NOFILE for the daemon (what prlimit
    does); `standin` picks the VMM binary."""

    def __init__(self, nofile=None, standin=None, env=None):
        super().__init__(env=env, vmm=True)
        self.nofile = nofile
        if standin:
            self.env["CHCP_CH_BINARY"] = standin
        self.conn = None
        self.runs = 0

    def _limits(self):
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def launch(self):
        """Start the process; do not wait for it to serve."""
        self.runs += 1
        self.log_path = os.path.join(self.tmp.name, "daemon.%d.log" % self.runs)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([chcp_bin()] + self.args, env=base_env(self.env),
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.PIPE, preexec_fn=self._limits)
        self.conn = None
        return self

    def start(self, timeout=START_TIMEOUT_S):
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("chcp-api exited with %d during start:\n%s\n%s" % (
                    self.proc.returncode, self.stderr(), self.output()[-4000:]))
            self.startup = self._find_startup_line()
            if self.startup:
                return self
            time.sleep(0.02)
        self.kill()
        raise AssertionError("chcp-api did not start:\n" + self.output()[-4000:])

    def stderr(self):
        if self.proc.poll() is None:
            return ""
        if not hasattr(self.proc, "_err_text"):
            self.proc._err_text = self.proc.stderr.read().decode("utf-8", "replace")
        return self.proc._err_text

    def refused(self, timeout=30):
        """Start, expecting a refusal: (exit code, stderr, log)."""
        self.launch()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("chcp-api started instead of refusing:\n" + self.output()[-4000:])
        return rc, self.stderr(), self.output()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.conn = None

    def stop(self):
        rc = super().stop()
        self.conn = None
        return rc

    # ---- calls -----------------------------------------------------------

    def call(self, method, req=None, timeout=30):
        data = json.dumps(req or {}).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                self.conn.request("POST", SERVICE + method, body=data,
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                body = r.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        out = json.loads(body or b"{}")
        if r.status != 200:
            raise RpcError(out.get("code", "unknown"), out.get("message", ""))
        return out

    def health(self):
        status, _, body = self.http("GET", "/_/health")
        return status, json.loads(body)

    def wait_recovered(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, h = self.health()
            if h.get("recovery", {}).get("complete"):
                return h
            time.sleep(0.02)
        raise AssertionError("recovery did not complete: %r" % h)

    def vms(self):
        out, token = {}, ""
        while True:
            page = self.call("ListVms", {"pageSize": 500, "pageToken": token})
            for v in page.get("vms", []):
                out[v["vmId"]] = v
            token = page.get("nextPageToken", "")
            if not token:
                return out

    def create(self, vm_id, boot=False, labels=None):
        self.call("CreateVm", {"vmId": vm_id, "labels": labels or {},
                               "config": {"payload": {"kernel": self.kernel,
                                                      "cmdline": "console=hvc0 id=" + vm_id}}})
        if boot:
            self.call("BootVm", {"vmId": vm_id})

    @property
    def vms_dir(self):
        return os.path.join(self.state_dir, "vms")

    @property
    def db(self):
        return os.path.join(self.state_dir, "chcp.db")


def start_time(pid):
    """/proc/<pid>/stat field 22, or None when the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid, started=None):
    st = start_time(pid)
    return st is not None and (started is None or st == started)


def identities(vms):
    """{vm_id: (pid, start time)} of VMs that have a VMM."""
    return {k: (v["vmmPid"], start_time(v["vmmPid"])) for k, v in vms.items() if v.get("vmmPid")}


def kill_vmms(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def vmm_pids_under(root):
    """Processes (but chcp-api) holding a file under `root` open."""
    root = os.path.realpath(root)
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % name):
                t = os.readlink("/proc/%s/fd/%s" % (name, fd))
                if t.startswith(root + "/") and "/vms/" in t:
                    out.append(int(name))
                    break
        except OSError:
            continue
    return out


@pytest.fixture
def state_daemon():
    made = []

    def make(**kw):
        d = StateDaemon(**kw)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(timeout=20)
        for pid in vmm_pids_under(d.tmp.name):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        d.cleanup()
