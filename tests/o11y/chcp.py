"""chcp.py - a real chcp-api for the o11y suite, and the clients that call it.

Chcp is the daemon ($CHCP_BIN, default build/asan/chcp-api) with telemetry
configured through its documented environment (UNKEY_CHCP_OTEL_*), the Cloud
Hypervisor stand-in as its VMM ($CHCP_CH_BINARY, default
build/asan/ch-standin/cloud-hypervisor), and a temporary state and image
directory holding a dummy kernel. It listens on 127.0.0.1 with port 0 (the
kernel picks; the startup log line says which) and its Prometheus listener
on a free port. stop() wants exit 0 after SIGTERM and no sanitizer report.

Clients: `buf curl` (connect-go / grpc-go inside: Connect, gRPC, gRPC-Web)
for protocol coverage, and a plain Connect-JSON client on http.client for
many fast calls (sampling ratios, queue overflow, latency under faults).
"""

import http.client
import json
import os
import secrets
import signal
import subprocess
import tempfile
import time

from peers import REPO, free_port, listening_sockets, wait_until

SERVICE = "cloudhypervisor.v1.VmService"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "UndefinedBehaviorSanitizer")


def _repo_path(var, default):
    p = os.environ.get(var, default)
    return p if os.path.isabs(p) else os.path.join(REPO, p)


def chcp_bin():
    return _repo_path("CHCP_BIN", "build/asan/chcp-api")


def ch_binary():
    return _repo_path("CHCP_CH_BINARY", "build/asan/ch-standin/cloud-hypervisor")


def buf_bin():
    for p in (os.path.join(REPO, ".tools", "node_modules", ".bin", "buf"),
              os.path.join(REPO, "tests", "integration", "node_modules", ".bin", "buf")):
        if os.access(p, os.X_OK):
            return p
    raise AssertionError("buf not found: run scripts/deps.sh --tools (npm ci in tests/integration)")


def new_trace_id():
    return secrets.token_hex(16)


def new_span_id():
    return secrets.token_hex(8)


def traceparent(trace_id, span_id, sampled=True):
    return "00-%s-%s-%s" % (trace_id, span_id, "01" if sampled else "00")


class Client:
    """A plain Connect-JSON client on one kept-alive HTTP/1.1 connection."""

    def __init__(self, port):
        self.port = port
        self._conn = None

    def close(self):
        if self._conn:
            self._conn.close()
            self._conn = None

    def call(self, method, request=None, headers=None, timeout=10):
        """One Connect unary call with JSON on a kept-alive connection:
        (code, response or error dict); code is "ok" or the Connect code."""
        h = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
        h.update(headers or {})
        body = json.dumps(request or {}).encode()
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            self._conn.timeout = timeout
            if self._conn.sock:
                self._conn.sock.settimeout(timeout)
            try:
                self._conn.request("POST", "/%s/%s" % (SERVICE, method), body=body, headers=h)
                r = self._conn.getresponse()
                data = r.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        doc = json.loads(data) if data else {}
        if r.status == 200:
            return "ok", doc
        return doc.get("code", "http-%d" % r.status), doc


class Chcp:
    def __init__(self, otel=None, env=None, prometheus=True):
        self.tmp = tempfile.TemporaryDirectory(prefix="chcp-o11y-")
        root = self.tmp.name
        self.state_dir = os.path.join(root, "state")
        self.image_dir = os.path.join(root, "images")
        os.makedirs(self.image_dir)
        self.kernel = os.path.join(self.image_dir, "vmlinux")
        with open(self.kernel, "wb") as f:
            f.write(b"\x7fELF dummy kernel for the CH stand-in")
        self.log_path = os.path.join(root, "daemon.log")
        self.service_name = "chcp-o11y-" + secrets.token_hex(4)
        self.prom_port = free_port() if prometheus else None
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1"),
            "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
            "CHCP_ADDRESS": "127.0.0.1",
            "CHCP_PORT": "0",
            "CHCP_STATE_DIR": self.state_dir,
            "CHCP_IMAGE_DIRS": self.image_dir,
            "CHCP_CH_BINARY": ch_binary(),
            "CHCP_LOG_LEVEL": "info",
            "UNKEY_CHCP_OTEL_ENABLED": "true",
            "UNKEY_CHCP_OTEL_SERVICE_NAME": self.service_name,
            "UNKEY_CHCP_OTEL_SERVICE_VERSION": "9.8.7-o11y",
            "UNKEY_CHCP_OTEL_SAMPLING_RATE": "1",
            "CHCP_OTEL_BATCH_DELAY_MS": "100",
            "CHCP_OTEL_METRIC_INTERVAL_MS": "500",
        }
        if prometheus:
            self.env["UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED"] = "true"
            self.env["UNKEY_CHCP_OTEL_PROMETHEUS_PORT"] = str(self.prom_port)
        else:
            self.env["UNKEY_CHCP_OTEL_PROMETHEUS_ENABLED"] = "false"
        self.env.update(otel or {})
        self.env.update(env or {})
        self.env = {k: v for k, v in self.env.items() if v is not None}
        self.proc = None
        self.port = None
        self._client = None

    # ---- lifecycle ------------------------------------------------------------

    def start(self, timeout=20, wait_listening=True):
        """Start and wait for the "listening" line (logged once recovery is
        done), or with wait_listening=False only until /livez answers."""
        for p in (chcp_bin(), ch_binary()):
            if not os.access(p, os.X_OK):
                raise AssertionError("%s missing: make B=build/asan SAN=1 build standin-build" % p)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([chcp_bin()], env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("chcp-api exited with %d during start:\n%s"
                                     % (self.proc.returncode, self.output()[-6000:]))
            for rec in self.log_records():
                msg = rec.get("msg", "")
                if msg.startswith("chcp-api") and msg.endswith(" listening") and "port" in rec:
                    return int(rec["port"])
            return None

        if not wait_listening:
            self.port = wait_until(self._port_from_log, timeout, "chcp-api's port", interval=0.02)
            wait_until(lambda: self.http("GET", "/livez")[0] == 200, timeout, "/livez")
            return self
        self.port = wait_until(listening, timeout, "chcp-api's listening line", interval=0.02)
        if self.prom_port:
            wait_until(lambda: self.http("GET", "/metrics", port=self.prom_port)[0] == 200, timeout,
                       "chcp's Prometheus listener on port %d" % self.prom_port)
        return self

    def _port_from_log(self):
        """The API port before the listening line: the transport logs nothing,
        so ask the kernel which port the daemon's TCP listener has."""
        if self.proc.poll() is not None:
            raise AssertionError("chcp-api exited with %d during start:\n%s"
                                 % (self.proc.returncode, self.output()[-6000:]))
        return listening_port(self.proc.pid, exclude={self.prom_port})

    def stop(self, timeout=20):
        if self._client:
            self._client.close()
            self._client = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError("chcp-api did not exit after SIGTERM:\n" + self.output()[-6000:])
            out = self.output()
            for m in SANITIZER_MARKERS:
                assert m not in out, "sanitizer report:\n" + out[-8000:]
            assert rc == 0, "chcp-api exited %d after SIGTERM:\n%s" % (rc, out[-6000:])

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        kill_leftovers(self.tmp.name)
        if getattr(self, "_log", None):
            self._log.close()
        self.tmp.cleanup()

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_records(self):
        recs = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass
        return recs

    # ---- HTTP -----------------------------------------------------------------

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    def http(self, method, path, body=None, headers=None, port=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def metrics_text(self, port=None):
        st, hdrs, body = self.http("GET", "/metrics", port=port)
        assert st == 200, "/metrics answered %d: %s" % (st, body[:300])
        return hdrs, body.decode("utf-8")

    def health(self):
        st, hdrs, body = self.http("GET", "/_/health")
        return st, hdrs, body

    def call(self, method, request=None, headers=None, timeout=10):
        """One Connect call on this daemon's kept-alive client (see Client.call)."""
        if self._client is None:
            self._client = Client(self.port)
        return self._client.call(method, request, headers, timeout)

    def client(self):
        """Another client with its own connection (for concurrent calls)."""
        return Client(self.port)

    # ---- VMs (with the stand-in) -------------------------------------------------

    def vm_config(self, directives=(), devices=False):
        """A minimal VM; devices=True adds a disk and a network device with
        ids, which the stand-in reports counters for."""
        cmdline = " ".join(["console=hvc0"] + list(directives))
        cfg = {"cpus": {"bootVcpus": 1, "maxVcpus": 1}, "memory": {"size": str(64 << 20)},
               "payload": {"kernel": self.kernel, "cmdline": cmdline}}
        if devices:  # one image per VM: a running VMM locks its disks
            self._disks = getattr(self, "_disks", 0) + 1
            disk = os.path.join(self.image_dir, "disk%d.img" % self._disks)
            with open(disk, "wb") as f:
                f.truncate(1 << 20)
            cfg["disks"] = [{"path": disk, "id": "disk0"}]
            cfg["net"] = [{"tap": "chcp-o11y0", "id": "net0"}]
        return cfg


def listening_port(pid, exclude=()):
    """A TCP port process `pid` listens on, other than those in `exclude`."""
    try:
        ports = {p for _, p in listening_sockets(pid)} - set(exclude)
    except OSError:
        return None
    return min(ports) if ports else None


def vmm_pid(chcp, vm=None, timeout=10):
    """The pid of a VMM (stand-in) of this daemon, of VM `vm` if given: the
    processes whose command line names the daemon's temporary directory."""
    want = [chcp.tmp.name.encode(), b"cloud-hypervisor"] + ([("/vms/%s/" % vm).encode()] if vm else [])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if all(w in cmd for w in want):
                return int(pid)
        time.sleep(0.1)
    raise AssertionError("no VMM process found for %s %s" % (chcp.tmp.name, vm or ""))


def kill_leftovers(marker):
    """SIGKILL, by pid, the VMM stand-ins a failed test left behind: those
    whose command line names our temporary directory."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if marker.encode() in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def buf_curl(chcp, schema, method, request, protocol="connect", http2=False, headers=None, timeout=60):
    """One call through `buf curl`: ("ok", response) or (code, message)."""
    args = [buf_bin(), "curl", "--schema", schema, "--protocol", protocol, "--data", json.dumps(request)]
    if http2:
        args.append("--http2-prior-knowledge")
    for k, v in (headers or {}).items():
        args += ["-H", "%s: %s" % (k, v)]
    args.append("%s/%s/%s" % (chcp.base_url, SERVICE, method))
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if r.returncode == 0:
        return "ok", json.loads(r.stdout or "{}")
    text = r.stderr.strip()
    start = text.find("{")
    assert start >= 0, "buf curl failed without an RPC error:\n" + r.stdout + r.stderr
    err = json.loads(text[start:])
    return err["code"], err.get("message", "")


def time_calls(chcp, n, method="ListVms", request=None):
    """Latencies (s) of n sequential Connect calls that must all succeed."""
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        code, doc = chcp.call(method, request or {})
        out.append(time.monotonic() - t0)
        assert code == "ok", (code, doc)
    return out
