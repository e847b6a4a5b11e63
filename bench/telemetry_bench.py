#!/usr/bin/env python3
"""telemetry_bench.py - RPC throughput with telemetry fully on versus off, in one run.

chcp is started twice per round, identically except for telemetry:
  off: UNKEY_CHCP_OTEL_ENABLED=false (the default)
  on:  UNKEY_CHCP_OTEL_ENABLED=true, sampling rate 1.0, OTLP/HTTP to a local receiver
       that reads and accepts everything (HTTP/1.1 keep-alive, as a collector is), so every
       RPC's span is built, batched, encoded and sent; Prometheus port enabled; the
       batch processor's defaults (queue 2048, batch 512).
Each run: h2load, Connect unary ListVms (binary) over h2c at full speed (-c 16 -m 16 -t 1).
Rounds alternate which configuration goes first; medians are reported with the ratio
on/off. Nothing is asserted: this measures. Targets (issue 15): on >= 90% of off with a
10-VM page, >= 80% with an empty one, no span dropped.

  python3 bench/telemetry_bench.py --bin build/chcp-api [--rounds 5] [--duration 5]
      [--standin build/ch-standin/cloud-hypervisor --vms 10] [--callgrind]

With --standin, each daemon first creates --vms VMs (stand-in VMMs) so ListVms returns a
real page; without, the page is empty (the cheapest RPC, where a span's cost weighs most).

Also reported per run: the daemon's CPU per request (utime+stime from /proc), h2load's,
and this script's (the receiver runs in it: it shares the cores on the "on" runs), the
1-minute load average before the run, and the spans the daemon exported and dropped
against the spans it should have exported (one per RPC).

--callgrind: instead, count instructions with valgrind's callgrind (deterministic, load
does not matter): the daemon under callgrind, h2load sends N1 then N2 requests in two
runs, and (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one RPC, per thread (the event
loop, the export thread). Valgrind 3.19 lacks pidfd_open, so the daemon under it cannot
spawn VMMs: the 10 VMs are created beforehand by a daemon outside valgrind and their
VMMs stopped; the daemon under valgrind lists the same 10 records (as CRASHED).
"""
import argparse
import glob
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


class Receiver:
    """An OTLP/HTTP endpoint that reads and accepts every export: HTTP/1.1 with
    keep-alive, as a collector is, written against the socket so that the cost
    of the bench's own receiver (it shares the two cores with chcp and h2load)
    stays well under chcp's: Python's http.server spent about 0.8 us of CPU per
    span parsing each request. It reads the whole body (chunked or sized) and
    answers 200 with an empty body; it does not decode."""
    counts = {"requests": 0, "bytes": 0}

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.server_address = self.sock.getsockname()
        self._stop = False

    def serve_forever(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def shutdown(self):
        self._stop = True
        self.sock.close()

    def _serve(self, conn):
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        have = 0
        try:
            while True:
                end = buf.find(b"\r\n\r\n", 0, have)
                while end < 0:
                    if have == len(buf):
                        return
                    n = conn.recv_into(view[have:])
                    if n == 0:
                        return
                    have += n
                    end = buf.find(b"\r\n\r\n", 0, have)
                head = bytes(buf[:end]).lower()
                m = re.search(rb"\r\ncontent-length: *(\d+)", head)
                length = int(m.group(1)) if m else 0
                total = end + 4 + length
                if total > len(buf):  # a bigger body than the buffer: grow it
                    buf.extend(bytearray(total - len(buf)))
                    view = memoryview(buf)
                while have < total:
                    n = conn.recv_into(view[have:])
                    if n == 0:
                        return
                    have += n
                Receiver.counts["requests"] += 1
                Receiver.counts["bytes"] += length
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n"
                             b"content-length: 0\r\n\r\n")
                buf[:have - total] = buf[total:have]
                have -= total
        finally:
            conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_live(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("chcp-api did not become ready")


def rpc(port, method, body):
    req = urllib.request.Request(
        "http://127.0.0.1:%d/cloudhypervisor.v1.VmService/%s" % (port, method),
        data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def seed(port, n, kernel):
    for i in range(n):
        rpc(port, "CreateVm", {"vmId": "bench-%02d" % i, "labels": {"app": "bench", "tier": "web"},
                               "config": {"payload": {"kernel": kernel, "cmdline": "console=hvc0"},
                                          "cpus": {"bootVcpus": 2},
                                          "memory": {"size": str(1 << 30)}}})
        rpc(port, "BootVm", {"vmId": "bench-%02d" % i})
    return 2 * n  # RPCs made


def unseed(port, n):
    for i in range(n):
        rpc(port, "DeleteVm", {"vmId": "bench-%02d" % i})


def daemon_env(work, port, telemetry, receiver_port, standin, state=None):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CHCP_ADDRESS": "127.0.0.1",
        "CHCP_PORT": str(port),
        "CHCP_STATE_DIR": os.path.join(work, "state-%s" % ("on" if telemetry else "off")),
        "CHCP_LOG_LEVEL": "warn",
        "CHCP_CH_BINARY": standin or "/bin/true",
        "CHCP_IMAGE_DIRS": work,
    }
    if telemetry:
        env.update({
            "UNKEY_CHCP_OTEL_ENABLED": "true",
            "UNKEY_CHCP_OTEL_ENDPOINT": "http://127.0.0.1:%d" % receiver_port,
            "UNKEY_CHCP_OTEL_SAMPLING_RATE": "1.0",
            "UNKEY_CHCP_OTEL_PROMETHEUS_PORT": str(free_port()),
        })
    shutil.rmtree(env["CHCP_STATE_DIR"], ignore_errors=True)
    if state:  # a prepared state directory (callgrind: VMs defined beforehand)
        shutil.copytree(state, env["CHCP_STATE_DIR"], ignore=shutil.ignore_patterns("*.sock"))
    return env


def start_chcp(argv, work, telemetry, receiver_port, standin=None, state=None):
    port = free_port()
    env = daemon_env(work, port, telemetry, receiver_port, standin, state)
    log = open(os.path.join(work, "chcp-%s.log" % ("on" if telemetry else "off")), "w")
    p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_live(port, timeout=120)
    return p, port


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def h2load_cmd(port, body, duration=None, n=None, clients=16, streams=16):
    cmd = ["h2load", "-c", str(clients), "-m", str(streams), "-t", "1"]
    cmd += ["-D", str(duration), "--warm-up-time", "1"] if duration else ["-n", str(n)]
    return cmd + ["-d", body, "-H", "content-type: application/proto",
                  "http://127.0.0.1:%d/cloudhypervisor.v1.VmService/ListVms" % port]


def h2load(cmd, timeout):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out.stdout)
    st = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out.stdout)
    if not m or not st:
        raise RuntimeError("cannot parse h2load output:\n" + out.stdout[-2000:] + out.stderr[-2000:])
    return float(m.group(1)), int(st.group(4))


def cpu_seconds(pid, tid=None):
    """utime + stime of a process, all its threads (fields 14 and 15 of /proc/<pid>/stat),
    or of one of its threads."""
    path = "/proc/%d/task/%d/stat" % (pid, tid) if tid else "/proc/%d/stat" % pid
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def export_thread(pid):
    """The tid of the daemon's OTLP export thread (named chcp-otlp), or None."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() == "chcp-otlp":
                    return int(tid)
        except OSError:
            pass
    return None


def rpcs_served(port):
    """RPCs the daemon answered (its rpc_server_requests_total): one span each."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    return int(sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                   if ln.startswith("rpc_server_requests_total{")))


def telemetry_status(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/_/health" % port, timeout=5) as r:
        return json.load(r)["telemetry"]


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(), "git": rev,
            "h2load": subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()}


def one_run(a, mode, srv, work, body, kernel):
    p, port = start_chcp([a.bin], work, mode == "on", srv.server_address[1],
                         os.path.abspath(a.standin) if a.standin else None)
    try:
        if a.standin:
            seed(port, a.vms, kernel)
        load = os.getloadavg()[0]
        tid = export_thread(p.pid)
        loop0, exp0 = cpu_seconds(p.pid, p.pid), cpu_seconds(p.pid, tid) if tid else 0
        cpu0, self0 = cpu_seconds(p.pid), resource.getrusage(resource.RUSAGE_SELF)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        rps, ok = h2load(h2load_cmd(port, body, duration=a.duration), a.duration + 120)
        cpu1, self1 = cpu_seconds(p.pid), resource.getrusage(resource.RUSAGE_SELF)
        loop1, exp1 = cpu_seconds(p.pid, p.pid), cpu_seconds(p.pid, tid) if tid else 0
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = {"mode": mode, "req_s": rps, "ok": ok, "load1": load,
             "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / max(ok, 1),
             "loop_cpu_us_per_req": (loop1 - loop0) * 1e6 / max(ok, 1),
             "export_cpu_us_per_req": (exp1 - exp0) * 1e6 / max(ok, 1),
             "h2load_cpu_us_per_req": (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime)
             * 1e6 / max(ok, 1),
             "script_cpu_us_per_req": (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
             * 1e6 / max(ok, 1)}
        if mode == "on":
            calls = rpcs_served(port)  # warm-up requests included: every one made a span
            deadline = time.time() + 30  # the last batch goes out on the 5 s batch delay
            while True:
                t = telemetry_status(port)
                if t["spans_exported"] + t["spans_dropped"] >= calls or time.time() > deadline:
                    break
                time.sleep(0.25)
            # At least one span per RPC (CreateVm/BootVm of the seeding have children too).
            r.update({"spans_expected": calls, "spans_exported": t["spans_exported"],
                      "spans_dropped": t["spans_dropped"]})
        return r
    finally:
        if a.standin:
            unseed(port, a.vms)
        stop(p)


def throughput(a, srv, work, body, kernel):
    runs = []
    for r in range(a.rounds):
        order = ["off", "on"] if r % 2 == 0 else ["on", "off"]
        for mode in order:
            res = one_run(a, mode, srv, work, body, kernel)
            res["round"] = r + 1
            runs.append(res)
            extra = ""
            if mode == "on":
                extra = ", spans exported %d (RPCs %d), dropped %d" % (
                    res["spans_exported"], res["spans_expected"], res["spans_dropped"])
            print("round %d %-3s %9.0f req/s (%d ok), chcp %.2f us CPU/req (loop %.2f, export thread %.2f), "
                  "h2load %.2f, receiver+script %.2f, load %.2f%s"
                  % (r + 1, mode, res["req_s"], res["ok"], res["cpu_us_per_req"], res["loop_cpu_us_per_req"],
                     res["export_cpu_us_per_req"], res["h2load_cpu_us_per_req"], res["script_cpu_us_per_req"],
                     res["load1"], extra), flush=True)
    med = {}
    for mode in ("off", "on"):
        rs = [x for x in runs if x["mode"] == mode]
        med[mode] = {k: statistics.median(x[k] for x in rs) for k in
                     ("req_s", "cpu_us_per_req", "loop_cpu_us_per_req", "export_cpu_us_per_req",
                      "h2load_cpu_us_per_req", "script_cpu_us_per_req", "load1")}
    on_runs = [x for x in runs if x["mode"] == "on"]
    summary = {"runs": runs, "median": med, "ratio": med["on"]["req_s"] / med["off"]["req_s"],
               "spans_expected": sum(x["spans_expected"] for x in on_runs),
               "spans_exported": sum(x["spans_exported"] for x in on_runs),
               "spans_dropped": sum(x["spans_dropped"] for x in on_runs)}
    target = 0.9 if a.standin else 0.8
    print("\nListVms, %s page, %d alternating rounds of %d s (medians):\n"
          "  telemetry off: %9.0f req/s, chcp %.2f us CPU/req\n"
          "  telemetry on:  %9.0f req/s, chcp %.2f us CPU/req\n"
          "  on/off: %.1f%% of the req/s (target >= %d%%: %s); CPU per request +%.2f us\n"
          "  spans exported %d (one per RPC: %d, plus the seeding's VM spans), dropped %d\n"
          "  1-minute load average before the runs: median %.2f (off), %.2f (on)"
          % ("%d-VM" % a.vms if a.standin else "empty", a.rounds, a.duration, med["off"]["req_s"],
             med["off"]["cpu_us_per_req"], med["on"]["req_s"], med["on"]["cpu_us_per_req"],
             100 * summary["ratio"], 100 * target, "met" if summary["ratio"] >= target else "MISSED",
             med["on"]["cpu_us_per_req"] - med["off"]["cpu_us_per_req"], summary["spans_exported"],
             summary["spans_expected"], summary["spans_dropped"], med["off"]["load1"], med["on"]["load1"]))
    return summary


def callgrind_totals(prefix):
    """{thread number: Ir} from callgrind's per-thread output files."""
    out = {}
    for f in glob.glob(prefix + "-*"):
        with open(f) as fh:
            m = re.search(r"^summary: (\d+)", fh.read(), re.M)
        if m:
            out[int(f.rsplit("-", 1)[1])] = int(m.group(1))
    return out


def prepared_state(a, srv, work, kernel):
    """A state directory holding --vms VMs, made by a daemon outside valgrind
    (valgrind 3.19 lacks pidfd_open, so no VMM can be spawned under it). Their
    VMMs are then stopped: the daemon under valgrind finds them CRASHED, and
    ListVms still answers the same 10-record page."""
    state = os.path.join(work, "prepared-state")
    if not a.standin:
        os.makedirs(state)
        return state
    p, port = start_chcp([a.bin], work, False, srv.server_address[1], os.path.abspath(a.standin))
    try:
        seed(port, a.vms, kernel)
    finally:
        stop(p)  # VMs (and their VMMs) outlive the daemon
    root = os.path.join(work, "state-off")
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if root.encode() in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    time.sleep(0.5)
    shutil.copytree(root, state, ignore=shutil.ignore_patterns("*.sock"))  # dead VMMs' sockets
    return state


def callgrind_run(a, mode, srv, work, body, state, n):
    prefix = os.path.join(work, "callgrind-%s-%d.out" % (mode, n))
    argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--callgrind-out-file=" + prefix, a.bin]
    p, port = start_chcp(argv, work, mode == "on", srv.server_address[1],
                         os.path.abspath(a.standin) if a.standin else None, state)
    try:
        _, ok = h2load(h2load_cmd(port, body, n=n, clients=1, streams=1), 1800)
        assert ok == n, (ok, n)
        if mode == "on":  # every span exported before the daemon stops
            deadline = time.time() + 60
            while telemetry_status(port)["spans_exported"] < n and time.time() < deadline:
                time.sleep(0.5)
    finally:
        stop(p)
    return callgrind_totals(prefix)


def callgrind(a, srv, work, body, kernel):
    n1, n2 = a.callgrind_requests
    state = prepared_state(a, srv, work, kernel)
    res = {}
    for mode in ("off", "on"):
        t1 = callgrind_run(a, mode, srv, work, body, state, n1)
        t2 = callgrind_run(a, mode, srv, work, body, state, n2)
        per = {th: (t2.get(th, 0) - t1.get(th, 0)) / (n2 - n1) for th in sorted(set(t1) | set(t2))}
        # Thread 1 is the event loop; the others: libuv's pool, the store writer, the export thread.
        res[mode] = {"total": sum(per.values()), "loop": per.get(1, 0.0),
                     "other_threads": {str(k): v for k, v in per.items() if k != 1 and abs(v) >= 1}}
        print("callgrind %-3s: %7.0f instructions per RPC (event loop %.0f, other threads %s)"
              % (mode, res[mode]["total"], res[mode]["loop"],
                 {k: round(v) for k, v in res[mode]["other_threads"].items()}), flush=True)
    print("telemetry on adds %.0f instructions per RPC (+%.1f%%): %.0f on the event loop, %.0f on other threads"
          % (res["on"]["total"] - res["off"]["total"], 100 * (res["on"]["total"] / res["off"]["total"] - 1),
             res["on"]["loop"] - res["off"]["loop"],
             (res["on"]["total"] - res["on"]["loop"]) - (res["off"]["total"] - res["off"]["loop"])))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/chcp-api")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--json", default="bench/results/telemetry.json")
    ap.add_argument("--standin", help="CH stand-in binary; enables --vms")
    ap.add_argument("--vms", type=int, default=10)
    ap.add_argument("--callgrind", action="store_true", help="count instructions per RPC instead")
    ap.add_argument("--callgrind-requests", type=int, nargs=2, default=[1000, 3000], metavar=("N1", "N2"))
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)

    info = machine()
    print("machine: %(cpus)s CPUs, %(cpu_model)s, kernel %(kernel)s; git %(git)s; %(h2load)s" % info)
    print("command: %s" % " ".join([sys.executable] + sys.argv), flush=True)
    srv = Receiver()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="chcp-telemetry-bench-")
    body = os.path.join(work, "request.bin")
    with open(body, "wb") as f:  # ListVmsRequest{page_size: 100}
        f.write(bytes([0x08, 100]))
    kernel = os.path.join(work, "vmlinux")
    with open(kernel, "w") as f:
        f.write("not a kernel: the stand-in only checks that it exists\n")
    try:
        if a.callgrind:
            summary = {"callgrind": callgrind(a, srv, work, body, kernel)}
        else:
            summary = throughput(a, srv, work, body, kernel)
    finally:
        srv.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    summary.update({"machine": info, "command": [sys.executable] + sys.argv, "rounds": a.rounds,
                    "duration_s": a.duration, "vms": a.vms if a.standin else 0,
                    "receiver_requests": Receiver.counts["requests"]})
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
