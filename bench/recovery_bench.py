#!/usr/bin/env python3
"""recovery_bench.py - how long chcp-api takes to start with N running VMs
to re-adopt (docs/durability.md has the method and the latest figure).

Creates and boots N VMs on the CH stand-in, stops the daemon gracefully
(SIGTERM: the VMMs keep running), starts it again and measures:
  * recovery: the manager's own figure (load records, /proc scan, adopt every
    VMM, one vm.info per VM, reconcile), from GET /_/health;
  * start-to-serving: from exec of chcp-api until /_/health reports recovery
    complete (includes process start, store open and the listeners).
It then checks every VMM kept its pid, and cleans up (kills the stand-ins it
started, by pid, and removes its temp directory). It measures and reports;
it asserts no timing.

  python3 bench/recovery_bench.py --bin build/rel/chcp-api \\
      --standin build/rel/ch-standin/cloud-hypervisor --vms 1000
"""
import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "crash"))
from chcp import Daemon, vmm_processes  # noqa: E402


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def make_vms(d, kernel, n, workers):
    def one(i):
        c = Daemon.__new__(Daemon)  # a connection per thread, same daemon
        c.__dict__.update(d.__dict__)
        c.conn = None
        vm_id = "bench-%04d" % i
        c.call("CreateVm", {"vmId": vm_id, "config": {"payload": {"kernel": kernel},
                                                       "memory": {"size": "67108864"}}})
        c.call("BootVm", {"vmId": vm_id})
        return vm_id
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, range(n)))


def list_all(d):
    out, token = {}, ""
    while True:
        r = d.call("ListVms", {"pageSize": 1000, "pageToken": token})
        for v in r.get("vms", []):
            out[v["vmId"]] = v
        token = r.get("nextPageToken", "")
        if not token:
            return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--standin", required=True)
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="restarts measured")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args()
    raise_nofile()

    tmp = tempfile.mkdtemp(prefix="chcp-recovery-bench-")
    state = os.path.join(tmp, "state")
    img = os.path.join(tmp, "images")
    os.mkdir(img)
    kernel = os.path.join(img, "vmlinux")
    with open(kernel, "wb") as f:
        f.write(b"\x7fELF fake kernel")
    d = Daemon(os.path.abspath(a.bin), os.path.abspath(a.standin), state, img,
               os.path.join(tmp, "daemon.log"),
               env={"CHCP_MAX_CONCURRENT_STARTS": "256", "CHCP_LOG_LEVEL": os.environ.get("CHCP_LOG_LEVEL", "info")})
    result = {"vms": a.vms, "rounds": []}
    try:
        d.start()
        d.wait_recovered()
        t0 = time.monotonic()
        make_vms(d, kernel, a.vms, a.workers)
        print("created and booted %d VMs in %.1f s" % (a.vms, time.monotonic() - t0), flush=True)
        before = {k: v["vmmPid"] for k, v in list_all(d).items()}
        for r in range(a.rounds):
            rc = d.term(timeout=120)
            assert rc == 0, "SIGTERM exit %d" % rc
            t0 = time.monotonic()
            d.start(timeout=120)
            h = d.wait_recovered(timeout=120)
            wall = (time.monotonic() - t0) * 1000
            rec = h["recovery"]
            after = {k: v.get("vmmPid") for k, v in list_all(d).items()}
            assert after == before, "pids changed across the restart"
            assert rec["adopted"] == a.vms, rec
            print("restart %d: recovery %d ms (adopted %d, crashed %d), start-to-serving %.0f ms"
                  % (r + 1, rec["elapsed_ms"], rec["adopted"], rec["crashed"], wall), flush=True)
            result["rounds"].append({"recovery_ms": rec["elapsed_ms"], "start_to_serving_ms": wall})
            for line in d.log_since_start().splitlines():
                if "recovery: load" in line:  # CHCP_LOG_LEVEL=debug: the phases
                    print("  " + json.loads(line)["msg"], flush=True)
        best = min(x["start_to_serving_ms"] for x in result["rounds"])
        print("recovery of %d running VMs: best start-to-serving %.0f ms, recovery %s ms"
              % (a.vms, best, [x["recovery_ms"] for x in result["rounds"]]), flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(result, f, indent=1)
    finally:
        if d.proc and d.proc.poll() is None:
            d.term(timeout=120)
        for pid in vmm_processes(os.path.join(state, "vms")):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
