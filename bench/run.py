#!/usr/bin/env python3
"""run.py - the driver of `make bench`: chcp and the connect-go peer measured
side by side in one run, on loopback only.

Phases (docs/benchmarks.md explains the method):
  1. setup    chcp-api gets N VMs through its own CreateVm (VMMs are the CH
              stand-in); its ListVms page is dumped and loaded into the peer,
              so both serve identical content; `benchctl check` proves it on
              every protocol. Idle RSS of both.
  2. peak     h2load at full speed, rounds alternating chcp / peer.
  3. latency  h2load --rps at half of each server's median peak; p50/p99.
  4. lifecycle create/boot/shutdown/delete through chcp vs. the same REST
              calls straight to a stand-in, in alternating rounds; time
              added per operation; cycles/s and client retries at 1/4/16.
  5. memory   RSS delta of chcp with 1,000 more VMs defined.
Parts that cannot run yet (no chcp API, no stand-in) are skipped with the
reason in the output. Output: a table on stdout, bench/results/latest.json.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import loadgen  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--standin", default="", help="CH stand-in binary (lifecycle, memory)")
    ap.add_argument("--vms", type=int, default=10, help="VMs in the ListVms page")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3, help="seconds per measured h2load run")
    ap.add_argument("--warmup", type=float, default=1, help="h2load warm-up seconds per run")
    ap.add_argument("--clients", type=int, default=16, help="h2load connections")
    ap.add_argument("--streams", type=int, default=16, help="h2load streams per h2c connection")
    ap.add_argument("--baseline-rounds", type=int, default=3, help="rounds of the one-connection latency run")
    ap.add_argument("--baseline-rate", type=int, default=500, help="req/s of the one-connection latency run")
    ap.add_argument("--lifecycle-seconds", type=float, default=3, help="seconds per lifecycle run")
    ap.add_argument("--lifecycle-rounds", type=int, default=5,
                    help="alternating rounds (chcp, stand-in alone) at concurrency 1")
    ap.add_argument("--sweep-rounds", type=int, default=3,
                    help="alternating rounds at each level of the cycles/s sweep")
    ap.add_argument(
        "--lifecycle-concurrency", type=int, action="append", default=None,
        help="concurrency levels of the cycles/s sweep (default 4 and 16; 1 always runs)",
    )
    ap.add_argument("--memory-vms", type=int, default=1000)
    ap.add_argument("--skip", action="append", default=[], help="rpc, lifecycle or memory")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    return ap.parse_args()


class Ctl:
    """bench/connect-go's benchctl."""

    def __init__(self, path, image_dir):
        self.path = path
        self.image_dir = image_dir

    def __call__(self, *args, timeout=180):
        p = subprocess.run(
            [self.path] + [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
        if p.returncode != 0:
            raise RuntimeError((p.stderr or p.stdout).strip()[-1500:] or "benchctl %s failed" % args[0])
        return p.stdout


def machine_meta(args):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    h2 = subprocess.run(["h2load", "--version"], capture_output=True, text=True)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "git_rev": rev.stdout.strip() or "unknown",
        "h2load": h2.stdout.strip(),
        "load_avg_at_start": os.getloadavg(),
        "vms": args.vms,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "clients": args.clients,
        "streams": args.streams,
        "baseline_rate": args.baseline_rate,
    }


def setup_content(args, ctl, work, chcp, res):
    """Give chcp its VMs and the peer the same page; returns the data file.

    chcp: seed through CreateVm, check every protocol (GetVmInfo refreshes
    memory_actual_size/vmm_state/updated_at from the VMM, so that first check
    ignores those), then dump the page the peer will serve and check that
    chcp's ListVms equals it exactly."""
    data = os.path.join(work, "vms.pb")
    if chcp is not None:
        first = os.path.join(work, "vms-seeded.pb")
        ctl("seed", "-url", chcp.url, "-n", args.vms, "-prefix", "bench", "-image-dir", ctl.image_dir)
        ctl("dump", "-url", chcp.url, "-out", first)
        ctl("check", "-url", chcp.url, "-expect", first, "-relaxed")
        ctl("dump", "-url", chcp.url, "-out", data)
        ctl("check", "-url", chcp.url, "-expect", data, "-no-get")
    else:
        ctl("synth", "-n", args.vms, "-prefix", "bench", "-image-dir", ctl.image_dir, "-out", data)
    res["meta"]["response_bytes"] = os.path.getsize(data)
    return data


def rpc_phase(args, work, targets, res):
    """Peak rounds, then half-load latency rounds; rounds alternate order."""
    runs = {t.name: {} for t in targets}
    scs = loadgen.scenarios(args.streams)

    def order(r):
        return targets if r % 2 == 0 else list(reversed(targets))

    for sc in scs:
        for r in range(args.rounds):
            for t in order(r):
                rec = runs[t.name].setdefault(
                    sc.name, {"peak_rps": [], "cpu_us_per_req": [], "half_rps": [], "p50_us": [], "p99_us": [], "errors": []}
                )
                cpu0 = servers.cpu_seconds(t.pid)
                out = loadgen.run(work, t.url, sc, args.clients, args.duration, args.warmup)
                cpu = servers.cpu_seconds(t.pid) - cpu0
                rec["peak_rps"].append(out.rps)
                # CPU spent by the server per request, warm-up included in
                # both terms (requests during warm-up are estimated).
                total = out.rps * (args.duration + args.warmup)
                rec["cpu_us_per_req"].append(cpu / total * 1e6 if total else None)
                rec["errors"].append(out.failed + out.non2xx)
                print("  peak     %-14s round %d %-11s %10.0f req/s" % (sc.name, r + 1, t.name, out.rps), flush=True)
    for sc in scs:
        for r in range(args.rounds):
            for t in order(r):
                rec = runs[t.name][sc.name]
                rate = report.median(rec["peak_rps"]) / 2
                out = loadgen.run(work, t.url, sc, args.clients, args.duration, args.warmup, rate=rate)
                rec["half_rps"].append(out.rps)
                rec["p50_us"].append(out.p50_us)
                rec["p99_us"].append(out.p99_us)
                rec["errors"].append(out.failed + out.non2xx)
                print(
                    "  latency  %-14s round %d %-11s %8.0f req/s  p50 %6.0fus  p99 %7.0fus"
                    % (sc.name, r + 1, t.name, out.rps, out.p50_us, out.p99_us),
                    flush=True,
                )
    # Baseline: one connection, one request at a time, a low fixed rate: the
    # latency of a request that never queues behind another (neither in the
    # server nor in h2load's synchronized per-client bursts).
    for sc in scs:
        for r in range(args.baseline_rounds):
            for t in order(r):
                rec = runs[t.name][sc.name]
                out = loadgen.run(work, t.url, sc, 1, args.duration, args.warmup, rate=args.baseline_rate, streams=1)
                rec.setdefault("base_p50_us", []).append(out.p50_us)
                rec.setdefault("base_p99_us", []).append(out.p99_us)
                rec["errors"].append(out.failed + out.non2xx)
                print(
                    "  baseline %-14s round %d %-11s %8.0f req/s  p50 %6.0fus  p99 %7.0fus"
                    % (sc.name, r + 1, t.name, out.rps, out.p50_us, out.p99_us),
                    flush=True,
                )
    res["rpc"] = {"runs": runs}


def lifecycle_phase(args, ctl, work, chcp, standin, res):
    """Per-operation latency at concurrency 1, then cycles/s at each level of
    the sweep; every measurement is a round of chcp next to the stand-in
    driven directly at the same concurrency, the order alternating between
    rounds (chcp first in odd rounds), so that drift in the machine's load
    hits both. Reported: medians over the rounds."""

    def run_json(*a):
        return json.loads(ctl(*a, timeout=args.lifecycle_seconds + 120))

    secs = "%gs" % args.lifecycle_seconds
    seq = [0]

    def one(target, c):
        seq[0] += 1
        if target == "direct":
            return run_json(
                "direct", "-standin", standin, "-image-dir", ctl.image_dir,
                "-work-dir", os.path.join(work, "direct-%d" % seq[0]), "-concurrency", c, "-duration", secs,
            )
        return run_json(
            "lifecycle", "-url", chcp.url, "-image-dir", ctl.image_dir, "-prefix", "lc%d" % seq[0],
            "-concurrency", c, "-duration", secs,
        )

    levels = sorted(set([1] + args.lifecycle_concurrency))
    runs = {}
    for c in levels:
        rounds = args.lifecycle_rounds if c == 1 else args.sweep_rounds
        runs[c] = []
        for r in range(rounds):
            order = ("chcp", "direct") if r % 2 == 0 else ("direct", "chcp")
            rnd = {}
            for t in order:
                rnd[t] = one(t, c)
            runs[c].append(rnd)
            h, d = rnd["chcp"], rnd["direct"]
            line = "  lifecycle c=%-2d round %d: chcp %6.1f cycles/s (%d errors, %d busy retries), stand-in alone %6.1f" % (
                c, r + 1, h["cycles_per_s"], h["errors"], h.get("busy_retries", 0), d["cycles_per_s"])
            if c == 1:
                line += "; p50 chcp/direct: " + ", ".join(
                    "%s %s/%s" % (op, report.fmt(h["ops"].get(op, {}).get("p50_us"), "us"),
                                  report.fmt(d["ops"].get(op, {}).get("p50_us"), "us"))
                    for op in report.LIFECYCLE_OPS)
            print(line + "  (load %.1f)" % os.getloadavg()[0], flush=True)
    res["lifecycle"] = report.summarize_lifecycle(runs)
    res["lifecycle"]["rounds"] = {str(c): rr for c, rr in runs.items()}


def memory_phase(args, ctl, work, chcp_bin, standin, res):
    """A fresh chcp (so memory freed by earlier phases cannot hide the cost):
    RSS with no VM, then with --memory-vms VMs defined."""
    mem, why = servers.start_chcp(chcp_bin, work, standin, ctl.image_dir, tag="chcp-memory")
    if mem is None:
        raise RuntimeError(why)
    try:
        time.sleep(1)
        before = servers.rss_kib(mem.pid)
        t0 = time.monotonic()
        ctl(
            "seed", "-url", mem.url, "-n", args.memory_vms, "-prefix", "mem",
            "-image-dir", ctl.image_dir, "-timeout", "240s", timeout=300,
        )
        took = time.monotonic() - t0
        time.sleep(1)
        after = servers.rss_kib(mem.pid)
        print("  memory   %d VMs: RSS %d -> %d KiB" % (args.memory_vms, before, after), flush=True)
    finally:
        teardown(ctl, mem, None, work, standin, res, tag="chcp-memory")
    res["memory"] = {
        "vms": args.memory_vms,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_vm": (after - before) / args.memory_vms,
        "create_seconds": took,
        "creates_per_s": args.memory_vms / took if took else None,
    }


def teardown(ctl, chcp, peer, work, standin, res, tag="chcp"):
    if chcp is not None:
        pids_file = os.path.join(work, tag + "-vmm.pids")
        if chcp.alive():
            try:
                ctl("delete-all", "-url", chcp.url, "-pids-out", pids_file, "-timeout", "240s", timeout=300)
            except Exception as e:  # keep tearing down
                res.setdefault("notes", []).append("teardown: %s" % e)
        chcp.stop()
        if os.path.exists(pids_file):
            with open(pids_file) as f:
                pids = [int(x) for x in f.read().split()]
            n = servers.kill_pids(pids, standin)
            if n:
                res.setdefault("notes", []).append("teardown: killed %d VMM processes DeleteVm left behind" % n)
    if peer is not None:
        peer.stop()


def main():
    args = parse_args()
    if not args.lifecycle_concurrency:
        args.lifecycle_concurrency = [4, 16]
    bdir = os.path.abspath(args.build_dir)
    chcp_bin = os.path.join(bdir, "chcp-api")
    ctl_bin = os.path.join(bdir, "bench", "benchctl")
    peer_bin = os.path.join(bdir, "bench", "peer")
    standin = os.path.abspath(args.standin) if args.standin else ""
    if standin and not os.access(standin, os.X_OK):
        standin = ""
    for b in (ctl_bin, peer_bin):
        if not os.access(b, os.X_OK):
            sys.exit("run.py: %s missing (make bench-tools)" % b)
    work = tempfile.mkdtemp(prefix="chcp-bench-")
    image_dir = os.path.join(work, "images")
    os.makedirs(image_dir)
    for name in ("vmlinux", "rootfs.raw"):
        open(os.path.join(image_dir, name), "wb").close()
    ctl = Ctl(ctl_bin, image_dir)
    res = {"meta": machine_meta(args), "notes": [], "skipped": []}
    started = time.monotonic()
    chcp = peer = None
    try:
        ctl("bodies", "-dir", work, "-page-size", args.vms)
        why = None
        if os.access(chcp_bin, os.X_OK):
            chcp, why = servers.start_chcp(chcp_bin, work, standin, image_dir)
        else:
            why = "%s not built" % chcp_bin
        if chcp is not None:
            try:
                data = setup_content(args, ctl, work, chcp, res)
            except Exception as e:
                why = "chcp API not usable yet: %s" % e
                teardown(ctl, chcp, None, work, standin, res)
                chcp = None
        if chcp is None:
            res["skipped"].append("chcp: " + why)
            data = setup_content(args, ctl, work, None, res)
        peer = servers.start_peer(peer_bin, data, work)
        ctl("check", "-url", peer.url, "-expect", data)
        targets = [t for t in (chcp, peer) if t is not None]
        time.sleep(1)
        res["rss"] = {t.name: {"idle_kib": servers.rss_kib(t.pid)} for t in targets}
        print("work dir %s; servers: %s" % (work, ", ".join("%s %s" % (t.name, t.url) for t in targets)), flush=True)
        if "rpc" not in args.skip:
            rpc_phase(args, work, targets, res)
            res["rpc_summary"] = report.summarize_rpc(res["rpc"])
            time.sleep(1)
            for t in targets:
                st = servers.proc_status(t.pid)
                res["rss"][t.name].update({"after_load_kib": st.get("VmRSS"), "hwm_kib": st.get("VmHWM")})
        can_vm = chcp is not None and standin
        vm_why = "no chcp API" if chcp is None else "no CH stand-in binary"
        if "lifecycle" in args.skip:
            pass
        elif can_vm:
            try:
                lifecycle_phase(args, ctl, work, chcp, standin, res)
            except Exception as e:
                res["skipped"].append("lifecycle: %s" % e)
        else:
            res["skipped"].append("lifecycle: " + vm_why)
        # The servers under load are done: stop them so the memory phase's
        # fresh daemon has the machine to itself.
        teardown(ctl, chcp, peer, work, standin, res)
        chcp = peer = None
        if "memory" in args.skip:
            pass
        elif can_vm:
            try:
                memory_phase(args, ctl, work, chcp_bin, standin, res)
            except Exception as e:
                res["skipped"].append("memory: %s" % e)
        else:
            res["skipped"].append("memory (1,000 VMs): " + vm_why)
    finally:
        teardown(ctl, chcp, peer, work, standin, res)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    res["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    res["meta"]["load_avg_at_end"] = os.getloadavg()
    res["targets"] = report.targets_check(res.get("rpc_summary", {}), res.get("lifecycle"), res.get("memory"))
    report.write_json(res, args.out)
    report.print_table(res)
    print("results: %s (%.0f s)" % (os.path.relpath(args.out, os.getcwd()), res["meta"]["elapsed_s"]))


if __name__ == "__main__":
    main()
