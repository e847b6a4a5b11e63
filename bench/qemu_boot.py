#!/usr/bin/env python3
"""qemu_boot.py - boot time and memory of the real test guests on QEMU, driven
through chcp's own QEMU code (tests/qemu/qemu_driver.c). A measurement, not a
test: it asserts nothing about timing.

For each configuration, N runs: time from the spawn (fork of QEMU) to the
guest's first console marker, QEMU started with -S and continued as soon as
QMP is ready (so the figure includes the QMP handshake), and QEMU's RSS when
the marker appears. Prints one JSON line per configuration with the median.

  make bench-qemu [QEMU_BENCH_ARGS='--runs 7']
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = {
    # name: (driver args, marker)
    "linux-microvm-tcg": (["--accel", "tcg", "--kernel", "{g}/vmlinux", "--initrd",
                           "{g}/initrd.img", "--append", "quiet"], "chcp-guest: init"),
    "linux-q35-tcg": (["--machine", "q35", "--accel", "tcg", "--kernel", "{g}/bzImage",
                       "--initrd", "{g}/initrd.img", "--append", "quiet"], "chcp-guest: init"),
    "tiny-microvm-tcg": (["--tiny", "--accel", "tcg", "--kernel", "{g}/tiny.elf",
                          "--no-pvpanic"], "chcp-tiny: up"),
    "tiny-microvm-kvm": (["--tiny", "--accel", "kvm", "--kernel", "{g}/tiny.elf",
                          "--no-pvpanic"], "chcp-tiny: up"),
}


def one_run(driver, guest, args, marker, timeout):
    with tempfile.TemporaryDirectory(prefix="qbench.") as d:
        argv = [driver, "--dir", d, "--cont", "--marker", marker] + [
            a.format(g=os.path.abspath(guest)) for a in args]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        result = None
        deadline = time.monotonic() + timeout
        try:
            for line in p.stdout:
                m = json.loads(line)
                if "marker" in m:
                    p.stdin.write('{"id": 1, "rss": true}\n')
                    p.stdin.flush()
                    result = {"marker_ms": m["t_ms"]}
                elif "reply" in m and m["reply"]["id"] == 1:
                    result["rss_mib"] = m["reply"]["return"]["rss_kib"] / 1024
                    break
                elif "exit" in m:
                    break
                if time.monotonic() > deadline:
                    break
        finally:
            p.stdin.close()
            p.wait(timeout=30)
        return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("configs", nargs="*", default=list(CONFIGS))
    a = ap.parse_args()
    probe = json.loads(subprocess.run([a.probe], capture_output=True, text=True).stdout)
    print(json.dumps({"kvm_probe": probe, "load": os.getloadavg(), "cpus": os.cpu_count()}))
    for name in a.configs:
        args, marker = CONFIGS[name]
        if "kvm" in name and probe["level"] == "none":
            print(json.dumps({"config": name, "skipped": "no usable KVM"}))
            continue
        runs = [one_run(a.driver, a.guest, args, marker, a.timeout) for _ in range(a.runs)]
        ok = [r for r in runs if r]
        out = {"config": name, "runs": len(runs), "ok": len(ok)}
        if ok:
            out["marker_ms_median"] = round(statistics.median(r["marker_ms"] for r in ok), 1)
            out["marker_ms_all"] = [round(r["marker_ms"], 1) for r in ok]
            out["rss_mib_median"] = round(statistics.median(r["rss_mib"] for r in ok), 1)
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
