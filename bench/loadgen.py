"""loadgen.py - runs h2load for the RPC benchmarks and reads its results.

Two kinds of run: closed-loop at full speed (peak req/s), and rate-limited
with `--rps` (open-loop per client) with a per-request log, from which the
latency percentiles are computed. h2load is the same program for every
target, so whatever it costs in CPU is the same on both sides.
"""

import dataclasses
import math
import os
import re
import subprocess

LISTVMS_PATH = "/cloudhypervisor.v1.VmService/ListVms"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One way of calling ListVms: protocol, HTTP version, framing."""

    name: str
    h1: bool
    body: str  # file name in the work dir (see `benchctl bodies`)
    headers: tuple
    streams: int  # concurrent streams per connection (1 for HTTP/1.1)


def scenarios(streams):
    return [
        Scenario(
            "connect-h2c",
            False,
            "listvms.connect.bin",
            ("content-type: application/proto", "connect-protocol-version: 1"),
            streams,
        ),
        Scenario(
            "grpc-h2c",
            False,
            "listvms.grpc.bin",
            ("content-type: application/grpc", "te: trailers"),
            streams,
        ),
        # HTTP/1.1 keep-alive; h2load never pipelines a POST (-d) on HTTP/1.1.
        Scenario(
            "connect-http1",
            True,
            "listvms.connect.bin",
            ("content-type: application/proto", "connect-protocol-version: 1"),
            1,
        ),
    ]


@dataclasses.dataclass
class RunResult:
    rps: float
    succeeded: int
    failed: int
    non2xx: int
    p50_us: float = math.nan
    p99_us: float = math.nan
    latency_samples: int = 0


_FINISHED = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def parse_output(text):
    m = _FINISHED.search(text)
    r = _REQUESTS.search(text)
    s = _STATUS.search(text)
    if not (m and r and s):
        raise RuntimeError("cannot parse h2load output:\n" + text[-2000:])
    non2xx = int(s.group(2)) + int(s.group(3)) + int(s.group(4))
    return RunResult(
        rps=float(m.group(1)),
        succeeded=int(r.group(1)),
        failed=int(r.group(2)) + int(r.group(3)),
        non2xx=non2xx,
    )


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def read_latency_log(path):
    """h2load --log-file: start µs, status, µs to end of response."""
    lat = []
    with open(path) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] == "200":
                lat.append(int(parts[2]))
    lat.sort()
    return lat


def run(work, url, sc, clients, duration, warmup, rate=None, timeout_extra=30, streams=None):
    """One h2load run against url; rate = total req/s (None: full speed);
    streams overrides the scenario's concurrent streams per connection."""
    cmd = [
        "h2load",
        "-t",
        "1",
        "-c",
        str(clients),
        "-m",
        str(streams or sc.streams),
        "-D",
        "%dms" % round(duration * 1000),
        "--warm-up-time",
        "%dms" % round(warmup * 1000),
        "-d",
        os.path.join(work, sc.body),
    ]
    if sc.h1:
        cmd.append("--h1")
    for h in sc.headers:
        cmd += ["-H", h]
    log = None
    if rate is not None:
        per_client = max(1, int(round(rate / clients)))
        log = os.path.join(work, "h2load-latency.tsv")
        if os.path.exists(log):
            os.unlink(log)  # h2load appends
        cmd += ["--rps", str(per_client), "--log-file", log]
    cmd.append(url + LISTVMS_PATH)
    p = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=duration + warmup + timeout_extra,
    )
    if p.returncode != 0:
        raise RuntimeError("h2load failed (%d):\n%s" % (p.returncode, p.stdout[-2000:]))
    res = parse_output(p.stdout)
    if log:
        lat = read_latency_log(log)
        res.latency_samples = len(lat)
        res.p50_us = percentile(lat, 50)
        res.p99_us = percentile(lat, 99)
        os.unlink(log)
    return res
