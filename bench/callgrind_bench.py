#!/usr/bin/env python3
"""callgrind_bench.py - instructions per RPC, counted by valgrind's callgrind.

Instruction counts do not depend on the machine's load, so they are the
before/after evidence that wall-clock figures on a shared 2-core machine
cannot be. One daemon runs under `valgrind --tool=callgrind --separate-threads=yes`
with bench/vgshim.c preloaded (valgrind 3.19 lacks openat2 and the pidfd
calls; the shim runs exactly those natively), so it spawns real VMMs (the CH
stand-in) like the daemon outside valgrind does. A fixed request mix is sent
in phases, one call at a time; after each phase the script waits until the
daemon is idle and asks callgrind for a dump (`callgrind_control --dump`),
which also zeroes the counters. Every phase runs twice, with N1 and N2 calls:
(Ir(N2) - Ir(N1)) / (N2 - N1) is one call's cost, without the connection
set-up and other fixed costs. Per thread: the event loop (thread 1) and the
rest (the store's writer thread, libuv's pool).

Phases:
  ListVms, page of 10 VMs: Connect over h2c, gRPC over h2c, Connect over
    HTTP/1.1 (h2load, binary proto, one connection, one request at a time)
  GetVmInfo (Connect over h2c, benchctl): includes a vm.info to the VMM
  CreateVm, BootVm, ShutdownVm(force), DeleteVm (Connect over h2c, benchctl),
    each on its own VMs, with everything they cause (VMM events, record
    writes) - the VMM's own work is another process and not counted.

  python3 bench/callgrind_bench.py --bin build/chcp-api --standin build/ch-standin/cloud-hypervisor \
      --benchctl build/bench/benchctl --shim build/bench/vgshim.so [--json out.json]
"""
import argparse
import glob
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTVMS = "/cloudhypervisor.v1.VmService/ListVms"
# ListVmsRequest{page_size: 10}; Connect (bare) and gRPC (5-byte envelope).
LIST_BODY = bytes([0x08, 10])
LIST_SCENARIOS = [
    ("ListVms-10 connect-h2c", False, LIST_BODY, ["content-type: application/proto"]),
    ("ListVms-10 grpc-h2c", False, b"\x00\x00\x00\x00\x02" + LIST_BODY,
     ["content-type: application/grpc", "te: trailers"]),
    ("ListVms-10 connect-http1", True, LIST_BODY, ["content-type: application/proto"]),
]
LIFECYCLE = ["create", "boot", "shutdown", "delete"]
RPC_NAME = {"create": "CreateVm", "boot": "BootVm", "shutdown": "ShutdownVm(force)",
            "delete": "DeleteVm", "info": "GetVmInfo"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_cpu_ticks(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


class Daemon:
    """chcp-api under callgrind, with its own state directory."""

    def __init__(self, a, work):
        self.work = work
        self.port = free_port()
        self.prefix = os.path.join(work, "cg.out")
        state = os.path.join(work, "state")
        os.makedirs(state)
        env = {
            "PATH": "/usr/bin:/bin",
            "LD_PRELOAD": a.shim,
            "CHCP_ADDRESS": "127.0.0.1",
            "CHCP_PORT": str(self.port),
            "CHCP_STATE_DIR": state,
            "CHCP_IMAGE_DIRS": a.image_dir,
            "CHCP_CH_BINARY": a.standin,
            "CHCP_LOG_LEVEL": "warn",
        }
        argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
                "--callgrind-out-file=" + self.prefix, a.bin]
        self.log = open(os.path.join(work, "daemon.log"), "w")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=work, start_new_session=True)
        self.url = "http://127.0.0.1:%d" % self.port
        self.parts = 0
        self._wait_live(180)

    def _wait_live(self, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("chcp-api under valgrind exited: see %s" % self.log.name)
            try:
                with urllib.request.urlopen(self.url + "/livez", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("chcp-api under valgrind did not come up")

    def settle(self):
        """Until the daemon used no CPU for 300 ms (work caused by the last
        call - VMM events, record writes - is done)."""
        last = thread_cpu_ticks(self.proc.pid)
        quiet_since = time.time()
        end = time.time() + 30
        while time.time() < end:
            time.sleep(0.1)
            now = thread_cpu_ticks(self.proc.pid)
            if now != last:
                last, quiet_since = now, time.time()
            elif time.time() - quiet_since >= 0.3:
                return

    def dump(self, label):
        """Dump (and zero) the counters; {thread: Ir} of the part."""
        self.settle()
        self.parts += 1
        subprocess.run(["callgrind_control", "--dump=" + label, str(self.proc.pid)],
                       check=True, capture_output=True, timeout=120)
        out = {}
        end = time.time() + 60
        while time.time() < end:
            files = glob.glob("%s.%d-*" % (self.prefix, self.parts))
            if files:
                time.sleep(0.2)  # every thread's file
                break
            time.sleep(0.1)
        for f in glob.glob("%s.%d-*" % (self.prefix, self.parts)):
            with open(f) as fh:
                m = re.search(r"^summary: (\d+)", fh.read(), re.M)
            if m:
                out[int(f.rsplit("-", 1)[1])] = int(m.group(1))
        if not out:
            raise RuntimeError("callgrind wrote no dump for %s" % label)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def kill_leftover_vmms(work):
    """SIGKILL processes whose command line names this run's work directory
    (a VMM DeleteVm did not end); the directory is unique to this run."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if (work + "/").encode() in f.read():
                    os.kill(int(pid), 9)
        except OSError:
            pass


def h2load(url, h1, body_path, headers, n):
    cmd = ["h2load", "-n", str(n), "-c", "1", "-m", "1", "-t", "1", "-d", body_path]
    if h1:
        cmd.append("--h1")
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url + LISTVMS], capture_output=True, text=True, timeout=1800)
    m = re.search(r"status codes: (\d+) 2xx", out.stdout)
    if not m or int(m.group(1)) != n:
        raise RuntimeError("h2load: not %d successes:\n%s" % (n, out.stdout[-1500:]))


def benchctl(a, d, *args):
    subprocess.run([a.benchctl, "steps", "-url", d.url] + [str(x) for x in args], check=True,
                   capture_output=True, text=True, timeout=1800)


def per_call(t1, t2, n1, n2):
    per = {th: (t2.get(th, 0) - t1.get(th, 0)) / (n2 - n1) for th in set(t1) | set(t2)}
    loop = per.get(1, 0.0)
    other = sum(v for th, v in per.items() if th != 1)
    return {"total": round(loop + other), "loop": round(loop), "other_threads": round(other)}


def run(a):
    work = tempfile.mkdtemp(prefix="chcp-callgrind-")
    a.image_dir = os.path.join(work, "images")
    os.makedirs(a.image_dir)
    for name in ("vmlinux", "rootfs.raw"):
        open(os.path.join(a.image_dir, name), "wb").close()
    res = {}
    d = Daemon(a, work)
    try:
        d.dump("start-up")
        # The ListVms page: 10 VMs, booted (as in bench/run.py's seed).
        benchctl(a, d, "-op", "create", "-prefix", "page", "-n", 10, "-image-dir", a.image_dir)
        benchctl(a, d, "-op", "boot", "-prefix", "page", "-n", 10)
        d.dump("seed")
        n1, n2 = a.rpc_calls
        for name, h1, body, headers in LIST_SCENARIOS:
            path = os.path.join(work, "body.bin")
            with open(path, "wb") as f:
                f.write(body)
            counts = []
            for n in (n1, n2):
                h2load(d.url, h1, path, headers, n)
                counts.append(d.dump("%s x%d" % (name, n)))
            res[name] = per_call(counts[0], counts[1], n1, n2)
            print("  %-28s %9.0f instructions (loop %.0f, other threads %.0f)"
                  % (name, res[name]["total"], res[name]["loop"], res[name]["other_threads"]), flush=True)
        # GetVmInfo over the 10 page VMs, round robin; the first call on each
        # VM refreshes what CreateVm did not know yet (warm-up, not counted).
        benchctl(a, d, "-op", "info", "-prefix", "page", "-n", 10, "-vms", 10)
        d.dump("info warm-up")
        counts = []
        for n in (n1 // 10, n2 // 10):
            benchctl(a, d, "-op", "info", "-prefix", "page", "-n", n, "-vms", 10)
            counts.append(d.dump("info x%d" % n))
        res["GetVmInfo"] = per_call(counts[0], counts[1], n1 // 10, n2 // 10)
        print("  %-28s %9.0f instructions (loop %.0f, other threads %.0f)"
              % ("GetVmInfo", res["GetVmInfo"]["total"], res["GetVmInfo"]["loop"],
                 res["GetVmInfo"]["other_threads"]), flush=True)
        # The lifecycle: each step on fresh VMs, N1 then N2 of them.
        m1, m2 = a.lifecycle_calls
        steps = {op: [] for op in LIFECYCLE}
        first = 0
        for m in (m1, m2):
            for op in LIFECYCLE:
                args = ["-op", op, "-prefix", "cg", "-first", first, "-n", m]
                if op == "create":
                    args += ["-image-dir", a.image_dir]
                benchctl(a, d, *args)
                steps[op].append(d.dump("%s x%d" % (op, m)))
            first += m
        for op in LIFECYCLE:
            name = RPC_NAME[op]
            res[name] = per_call(steps[op][0], steps[op][1], m1, m2)
            print("  %-28s %9.0f instructions (loop %.0f, other threads %.0f)"
                  % (name, res[name]["total"], res[name]["loop"], res[name]["other_threads"]), flush=True)
    finally:
        # VMs outlive a daemon that stops: delete them first, and end any VMM
        # of this work directory that is still there.
        try:
            subprocess.run([a.benchctl, "delete-all", "-url", d.url, "-timeout", "120s"],
                           capture_output=True, timeout=180)
        except (OSError, subprocess.SubprocessError):
            pass
        d.stop()
        kill_leftover_vmms(work)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work dir kept: %s" % work)
    return res


def compare(res, path):
    """Print each RPC's count next to the baseline's (when there is one)."""
    try:
        with open(path) as f:
            base = json.load(f)
    except (OSError, ValueError):
        return
    print("compared with %s (git %s):" % (os.path.relpath(path), base.get("git_rev")))
    for name, r in res.items():
        b = base.get("per_rpc", {}).get(name)
        if not b or not b.get("total"):
            continue
        print("  %-28s %9.0f -> %9.0f  (%+.1f%%; loop %.0f -> %.0f)"
              % (name, b["total"], r["total"], 100 * (r["total"] / b["total"] - 1), b["loop"], r["loop"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/chcp-api")
    ap.add_argument("--standin", default="build/ch-standin/cloud-hypervisor")
    ap.add_argument("--benchctl", default="build/bench/benchctl")
    ap.add_argument("--shim", default="build/bench/vgshim.so")
    ap.add_argument("--rpc-calls", type=int, nargs=2, default=[500, 1500], metavar=("N1", "N2"))
    ap.add_argument("--lifecycle-calls", type=int, nargs=2, default=[5, 25], metavar=("N1", "N2"))
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "callgrind.json"))
    ap.add_argument("--baseline", default=os.path.join(ROOT, "bench", "callgrind-before.json"),
                    help="earlier results to compare with (default: issue 14's 'before')")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (callgrind files, logs)")
    a = ap.parse_args()
    for attr in ("bin", "standin", "benchctl", "shim"):
        setattr(a, attr, os.path.abspath(getattr(a, attr)))
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        sys.exit("callgrind_bench.py: valgrind is not installed (bench/deps.sh installs it)")
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    vg = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    print("instructions per RPC (callgrind; %s; git %s; one call at a time; (N2-N1) difference)" % (vg, rev),
          flush=True)
    t0 = time.monotonic()
    res = run(a)
    out = {"git_rev": rev, "valgrind": vg, "kernel": platform.release(), "rpc_calls": a.rpc_calls,
           "lifecycle_calls": a.lifecycle_calls, "elapsed_s": round(time.monotonic() - t0, 1),
           "per_rpc": res}
    compare(res, a.baseline)
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")
    print("results: %s (%.0f s)" % (os.path.relpath(a.json), out["elapsed_s"]))


if __name__ == "__main__":
    main()
