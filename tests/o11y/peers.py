"""peers.py - the real telemetry backends the o11y suite talks to.

Jaeger (all-in-one, built from its Go module by scripts/o11y-deps.sh into
.tools/bin) receives chcp's OTLP/HTTP traces and answers its query API;
Prometheus (Debian's package) scrapes chcp's /metrics and answers PromQL.
Both run as child processes on 127.0.0.1 only, on free ports, with in-memory
or temporary storage; every wait is bounded and stop() always reaps them.
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOLS_BIN = os.path.join(REPO, ".tools", "bin")


def free_port():
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_sockets(pid):
    """{(address, port)} of the TCP sockets in LISTEN and the bound UDP sockets
    of process `pid` (from its socket inodes and /proc/net); IPv6 addresses as
    32 hex digits."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open("/proc/net/" + table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            c = row.split()
            if c[9] not in inodes or (table.startswith("tcp") and c[3] != "0A"):
                continue
            addr, port = c[1].rsplit(":", 1)
            if len(addr) == 8:
                addr = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
            out.add((addr, int(port, 16)))
    return out


def http_get(url, timeout=5):
    """(status, body bytes); HTTP errors are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(fn, timeout, what, interval=0.1):
    """Poll fn() until it returns something truthy, at most `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except (OSError, ValueError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


class Process:
    """A child process with its output in a file and a bounded stop."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.tmp = tempfile.TemporaryDirectory(prefix="chcp-o11y-%s-" % name)
        self.log_path = os.path.join(self.tmp.name, name + ".log")
        self.argv = argv
        self.env = env
        self.proc = None

    def start(self):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise AssertionError("%s exited (%s):\n%s" % (self.name, self.proc.returncode, self.output()[-4000:]))

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, grace=3):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
        self.tmp.cleanup()


# ---- Jaeger --------------------------------------------------------------------


def jaeger_binary():
    path = os.environ.get("JAEGER_BIN", os.path.join(TOOLS_BIN, "jaeger-all-in-one"))
    if not os.access(path, os.X_OK):
        raise AssertionError("%s missing: run scripts/o11y-deps.sh (make o11y-test does)" % path)
    return path


def jaeger_argv(binary, otlp_http, otlp_grpc, query_http, query_grpc, admin, coll_grpc, coll_http):
    """Every listener of all-in-one bound to loopback (none on 0.0.0.0)."""
    return [
        binary,
        "--collector.otlp.enabled=true",
        "--collector.otlp.http.host-port=127.0.0.1:%d" % otlp_http,
        "--collector.otlp.grpc.host-port=127.0.0.1:%d" % otlp_grpc,
        "--collector.grpc-server.host-port=127.0.0.1:%d" % coll_grpc,
        "--collector.http-server.host-port=127.0.0.1:%d" % coll_http,
        "--query.http-server.host-port=127.0.0.1:%d" % query_http,
        "--query.grpc-server.host-port=127.0.0.1:%d" % query_grpc,
        "--admin.http.host-port=127.0.0.1:%d" % admin,
        "--log-encoding=console",
    ]


def jaeger_env():
    # Memory storage; Jaeger must not trace itself into someone's collector.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SPAN_STORAGE_TYPE": "memory",
            "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}


class Jaeger(Process):
    def __init__(self):
        ports = [free_port() for _ in range(7)]
        (self.otlp_http, self.otlp_grpc, self.query_http, self.query_grpc,
         self.admin, coll_grpc, coll_http) = ports
        super().__init__("jaeger", jaeger_argv(jaeger_binary(), *ports), env=jaeger_env())

    @property
    def otlp_endpoint(self):
        return "http://127.0.0.1:%d" % self.otlp_http

    @property
    def query_url(self):
        return "http://127.0.0.1:%d" % self.query_http

    def start(self, timeout=30):
        super().start()

        def ready():
            self.check_alive()
            st, _ = http_get("http://127.0.0.1:%d/" % self.admin, timeout=1)  # admin health check
            if st != 200:
                return False
            st, _ = http_get(self.query_url + "/api/services", timeout=1)
            return st == 200 and self._otlp_accepts()

        wait_until(ready, timeout, "Jaeger to be ready")
        return self

    def _otlp_accepts(self):
        with socket.create_connection(("127.0.0.1", self.otlp_http), timeout=1):
            return True

    # ---- query API ----------------------------------------------------------

    def _get_json(self, path, **params):
        url = self.query_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        st, body = http_get(url)
        if st == 404:
            return None
        if st != 200:
            raise AssertionError("Jaeger %s answered %d: %s" % (url, st, body[:500]))
        return json.loads(body)

    def services(self):
        return (self._get_json("/api/services") or {}).get("data") or []

    def traces(self, service, limit=1000, lookback="1h", **params):
        """Every trace Jaeger holds for `service` (list of Jaeger trace JSON)."""
        got = self._get_json("/api/traces", service=service, limit=limit, lookback=lookback, **params)
        return [normalize_trace(t) for t in (got or {}).get("data") or []]

    def trace(self, trace_id_hex):
        got = self._get_json("/api/traces/" + trace_id_hex)
        data = (got or {}).get("data") or []
        return normalize_trace(data[0]) if data else None

    def wait_trace(self, trace_id_hex, timeout=15, predicate=None):
        """Wait until Jaeger has the trace (and predicate(trace) holds)."""
        def have():
            t = self.trace(trace_id_hex)
            if t and (predicate is None or predicate(t)):
                return t
            return None

        return wait_until(have, timeout, "trace %s in Jaeger" % trace_id_hex, interval=0.2)

    def wait_traces(self, service, count, timeout=20, predicate=None):
        """Wait until Jaeger holds at least `count` traces (matching predicate)."""
        def enough():
            ts = [t for t in self.traces(service) if predicate is None or predicate(t)]
            return ts if len(ts) >= count else None

        return wait_until(enough, timeout, "%d trace(s) of %s in Jaeger" % (count, service), interval=0.25)


# ---- Jaeger trace JSON helpers -----------------------------------------------------


def normalize_trace(trace):
    """Jaeger prints ids without leading zeros; pad them back to W3C widths."""
    trace["traceID"] = trace["traceID"].zfill(32)
    for s in trace["spans"]:
        s["traceID"] = s["traceID"].zfill(32)
        s["spanID"] = s["spanID"].zfill(16)
        for ref in s.get("references", []):
            ref["traceID"] = ref["traceID"].zfill(32)
            ref["spanID"] = ref["spanID"].zfill(16)
    return trace


def tags(obj):
    """Jaeger span/process tags -> {key: value}."""
    return {t["key"]: t["value"] for t in obj.get("tags", [])}


def spans_named(trace, name):
    return [s for s in trace["spans"] if s["operationName"] == name]


def parent_id(span):
    for ref in span.get("references", []):
        if ref.get("refType") == "CHILD_OF":
            return ref["spanID"]
    return None


def process_of(trace, span):
    return trace["processes"][span["processID"]]


# ---- Prometheus --------------------------------------------------------------------


def prometheus_binary():
    path = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
    if not os.access(path, os.X_OK):
        raise AssertionError("%s missing: run scripts/o11y-deps.sh (Debian package prometheus)" % path)
    return path


def prometheus_config(targets, interval="1s"):
    """A config scraping each (job, host:port, path) every `interval`."""
    lines = ["global:", "  scrape_interval: %s" % interval, "  scrape_timeout: %s" % interval,
             "  evaluation_interval: %s" % interval, "scrape_configs:"]
    for job, target, path in targets:
        lines += ["  - job_name: %s" % json.dumps(job), "    metrics_path: %s" % json.dumps(path),
                  "    static_configs:", "      - targets: [%s]" % json.dumps(target)]
    return "\n".join(lines) + "\n"


def deploy_prometheus_config(api_port, prom_port, interval="1s"):
    """deploy/prometheus/prometheus.yml as shipped, pointed at a test
    daemon's ports (the substitution scripts/o11y.sh makes) and scraping
    every `interval`."""
    with open(os.path.join(REPO, "deploy", "prometheus", "prometheus.yml")) as f:
        text = f.read()
    for old, new in (("127.0.0.1:9464", "127.0.0.1:%d" % prom_port), ("127.0.0.1:8080", "127.0.0.1:%d" % api_port)):
        assert old in text, "deploy/prometheus/prometheus.yml no longer names %s" % old
        text = text.replace(old, new)
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        text = re.sub(r"(%s:) *\S+" % key, r"\1 %s" % interval, text)
    return text


class Prometheus(Process):
    def __init__(self, targets, interval="1s", config_text=None):
        """Scrape `targets` ((job, host:port, path) tuples), or run with
        `config_text` as its whole configuration."""
        self.port = free_port()
        tmp = tempfile.mkdtemp(prefix="chcp-o11y-promcfg-")
        self._cfg_dir = tmp
        self.config_path = os.path.join(tmp, "prometheus.yml")
        with open(self.config_path, "w") as f:
            f.write(config_text or prometheus_config(targets, interval))
        super().__init__("prometheus", [])
        self.argv = [
            prometheus_binary(),
            "--config.file=" + self.config_path,
            "--storage.tsdb.path=" + os.path.join(self.tmp.name, "data"),
            "--web.listen-address=127.0.0.1:%d" % self.port,
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=30):
        super().start()

        def ready():
            self.check_alive()
            st, _ = http_get(self.url + "/-/ready", timeout=1)
            return st == 200

        wait_until(ready, timeout, "Prometheus to be ready")
        return self

    def stop(self):
        # Its storage is thrown away: no need to wait for a tidy TSDB close.
        super().stop(grace=2)
        try:
            os.unlink(self.config_path)
            os.rmdir(self._cfg_dir)
        except OSError:
            pass

    def api(self, path, **params):
        st, body = http_get(self.url + path + "?" + urllib.parse.urlencode(params))
        if st != 200:
            raise AssertionError("Prometheus %s answered %d: %s" % (path, st, body[:500]))
        got = json.loads(body)
        assert got["status"] == "success", got
        return got["data"]

    def query(self, expr):
        """Instant query: list of (labels dict, float value)."""
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def scalar(self, expr):
        """The single value of an instant query, or None when it is empty."""
        res = self.query(expr)
        assert len(res) <= 1, "%s gave %d series: %s" % (expr, len(res), res)
        return res[0][1] if res else None

    def wait_value(self, expr, want, timeout=15):
        """Wait until the query answers exactly `want` (a scrape has caught up)."""
        seen = []

        def caught_up():
            seen.append(self.scalar(expr))
            return seen[-1] == want

        try:
            wait_until(caught_up, timeout, "%s == %r" % (expr, want), interval=0.25)
        except AssertionError:
            raise AssertionError("%s stayed %r, want %r (after %.0f s)" % (expr, seen[-1:], want, timeout))
        return want

    def targets_up(self):
        data = self.api("/api/v1/targets")
        return {t["labels"]["job"]: t for t in data["activeTargets"]}


# ---- OpenTelemetry Collector ------------------------------------------------------


def otelcol_binary():
    path = os.environ.get("OTELCOL_BIN", os.path.join(TOOLS_BIN, "otelcol-chcp"))
    if not os.access(path, os.X_OK):
        raise AssertionError("%s missing: run scripts/o11y-deps.sh (builds it with the collector's "
                             "builder from the Go module proxy)" % path)
    return path


class Collector(Process):
    """The OpenTelemetry Collector (core components, built by
    scripts/o11y-deps.sh): an OTLP/HTTP receiver on loopback whose traces and
    metrics are forwarded, re-encoded by the collector, with its otlp_http
    exporter to `forward_to` (an OTLP/HTTP base URL). Its own metrics
    (accepted/refused spans and points) are served in Prometheus format."""

    def __init__(self, forward_to):
        self.otlp_http, self.metrics_port = free_port(), free_port()
        tmp = tempfile.mkdtemp(prefix="chcp-o11y-otelcol-")
        self._cfg_dir = tmp
        self.config_path = os.path.join(tmp, "otelcol.yaml")
        with open(self.config_path, "w") as f:
            f.write(COLLECTOR_CONFIG % {"otlp": self.otlp_http, "forward": forward_to,
                                        "metrics": self.metrics_port})
        super().__init__("otelcol", [otelcol_binary(), "--config=file:" + self.config_path],
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})

    @property
    def otlp_endpoint(self):
        return "http://127.0.0.1:%d" % self.otlp_http

    def start(self, timeout=30):
        super().start()

        def ready():
            self.check_alive()
            st, _ = http_get("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=1)
            if st != 200:
                return False
            with socket.create_connection(("127.0.0.1", self.otlp_http), timeout=1):
                return True

        wait_until(ready, timeout, "the OpenTelemetry Collector to be ready")
        return self

    def stop(self):
        super().stop(grace=5)
        try:
            os.unlink(self.config_path)
            os.rmdir(self._cfg_dir)
        except OSError:
            pass

    def own_metrics(self):
        """{name: summed value} of the collector's own Prometheus metrics."""
        st, body = http_get("http://127.0.0.1:%d/metrics" % self.metrics_port)
        assert st == 200, body[:300]
        out = {}
        for line in body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name = line.split("{")[0].split(" ")[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out


COLLECTOR_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%(otlp)d
exporters:
  otlp_http:
    endpoint: %(forward)s
    compression: none
    retry_on_failure:
      enabled: false
    sending_queue:
      enabled: false
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp_http]
    metrics:
      receivers: [otlp]
      exporters: [otlp_http]
  telemetry:
    logs:
      level: warn
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %(metrics)d
"""
