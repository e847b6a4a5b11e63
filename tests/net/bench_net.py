#!/usr/bin/env python3
"""Not a test: how fast src/net allocates addresses, and how long one VM's
networking takes to set up and tear down, in a network namespace of its own.

  make bench-net [NET_BENCH_ARGS='--runs 20 --allocs 2000']

Peer, measured in the same run: the same host objects made the way a shell
script (or a control plane that shells out) does it, with iproute2 and the
nft command: `ip tuntap add`, `ip link set ... master ... up`, three
`nft add rule` (masquerade, two DNATs), then `ip link del` and a handle
lookup + `nft delete rule` for each.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time


def sh(ns, *cmd, env=None):
    r = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{cmd}: {r.stderr.decode()}{r.stdout.decode()}")
    return r.stdout.decode()


def tool(ns, path, state, *args, **settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHCP_NET_")}
    env.update({f"CHCP_NET_{k.upper()}": str(v) for k, v in settings.items()})
    return json.loads(sh(ns, path, "--state", state, *args, env=env).splitlines()[-1])


def peer(ns, runs):
    sh(ns, "ip", "link", "add", "peerbr0", "type", "bridge")
    sh(ns, "nft", "add table inet peer; add chain inet peer post { type nat hook postrouting "
       "priority 100; }; add chain inet peer pre { type nat hook prerouting priority -100; }; "
       "add chain inet peer out { type nat hook output priority -100; }")
    up, down = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        sh(ns, "ip", "tuntap", "add", "dev", "peertap0", "mode", "tap", "vnet_hdr")
        sh(ns, "ip", "link", "set", "peertap0", "master", "peerbr0", "up")
        for rule in ('post ip saddr 10.99.0.5 oifname != "peerbr0" masquerade comment "vm"',
                     'pre fib daddr type local tcp dport 18080 dnat ip to 10.99.0.5:80 comment "vm"',
                     'out fib daddr type local tcp dport 18080 dnat ip to 10.99.0.5:80 comment "vm"'):
            sh(ns, "nft", "add rule inet peer " + rule)
        t1 = time.monotonic()
        sh(ns, "ip", "link", "del", "peertap0")
        listing = json.loads(sh(ns, "nft", "-j", "-a", "list", "table", "inet", "peer"))
        for item in listing["nftables"]:
            r = item.get("rule")
            if r and r.get("comment") == "vm":
                sh(ns, "nft", "delete", "rule", "inet", "peer", r["chain"], "handle",
                   str(r["handle"]))
        t2 = time.monotonic()
        up.append((t1 - t0) * 1000)
        down.append((t2 - t1) * 1000)
    return statistics.median(up), statistics.median(down)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--allocs", type=int, default=2000)
    a = ap.parse_args()
    ns = f"chcpbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        sh(ns, "ip", "link", "set", "lo", "up")
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o700)
            rates = []
            for i in range(3):
                state = os.path.join(tmp, f"alloc{i}")
                os.mkdir(state, 0o700)
                rates.append(tool(ns, a.tool, state, "alloc-bench", str(a.allocs)))
            allocs = [r["alloc_per_second"] for r in rates]
            releases = [r["release_per_second"] for r in rates]
            print(f"IPAM ({a.allocs} VMs x 1 IPv4 from a /16, 3 runs, fresh database each): "
                  f"allocations/s median {statistics.median(allocs):.0f} "
                  f"(runs: {', '.join(f'{x:.0f}' for x in allocs)}), "
                  f"releases/s median {statistics.median(releases):.0f}")
            state = os.path.join(tmp, "setup")
            os.mkdir(state, 0o700)
            vm_dir = os.path.join(tmp, "vm")
            os.mkdir(vm_dir, 0o700)
            settings = dict(mode="bridge", nat="true", ipv4_cidr="10.97.0.0/24")
            for seed in (None, vm_dir):
                args = ["setup-bench", str(a.runs)] + ([seed] if seed else [])
                r = tool(ns, a.tool, state, *args, **settings)
                print(f"one VM, bridge + NAT + 1 port forward{' + NoCloud seed' if seed else ''}"
                      f" ({a.runs} runs): setup median {r['setup_ms']['median']:.2f} ms "
                      f"(p90 {r['setup_ms']['p90']:.2f}), release median "
                      f"{r['release_ms']['median']:.2f} ms (p90 {r['release_ms']['p90']:.2f})")
            pu, pd = peer(ns, a.runs)
            print(f"peer, iproute2 + nft commands for the same objects ({a.runs} runs): "
                  f"setup median {pu:.2f} ms, teardown median {pd:.2f} ms")
    finally:
        subprocess.run(["ip", "netns", "delete", ns])


if __name__ == "__main__":
    main()
