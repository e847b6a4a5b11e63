"""report.py - turns the raw measurements of bench/run.py into the summary
(medians of the rounds, comparisons against the targets of the brief), the
human-readable table on stdout, and bench/results/latest.json.

Targets are reported as "met"/"missed" for the reader; nothing fails on them:
benchmarks measure, they do not assert.
"""

import json
import math
import os
import statistics


LIFECYCLE_OPS = ("create", "boot", "shutdown", "delete")


def median(values):
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(vals) if vals else None


def fmt(v, unit="", digits=0):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return ("{:,.%df}" % digits).format(v) + unit


def summarize_rpc(rpc):
    """Medians per target and scenario from the per-round lists."""
    out = {}
    for target, per_sc in rpc.get("runs", {}).items():
        for sc, r in per_sc.items():
            s = out.setdefault(sc, {}).setdefault(target, {})
            s["peak_rps"] = median(r["peak_rps"])
            s["peak_rps_rounds"] = r["peak_rps"]
            s["cpu_us_per_req"] = median(r.get("cpu_us_per_req", []))
            s["half_load_rps"] = median(r.get("half_rps", []))
            s["p50_us"] = median(r.get("p50_us", []))
            s["p99_us"] = median(r.get("p99_us", []))
            s["errors"] = sum(r.get("errors", []))
            s["base_p50_us"] = median(r.get("base_p50_us", []))
            s["base_p99_us"] = median(r.get("base_p99_us", []))
    for sc, per_t in out.items():
        c, g = per_t.get("chcp"), per_t.get("connect-go")
        if c and g and c["peak_rps"] and g["peak_rps"]:
            per_t["speedup"] = c["peak_rps"] / g["peak_rps"]
        if c and g and c["cpu_us_per_req"] and g["cpu_us_per_req"]:
            per_t["cpu_ratio"] = g["cpu_us_per_req"] / c["cpu_us_per_req"]
    return out


def summarize_lifecycle(runs):
    """Medians over alternating rounds. runs: {concurrency: [{"chcp": result,
    "direct": result}, ...]} (benchctl lifecycle/direct JSON). Time added per
    operation is the median of the per-round differences of the p50s."""
    out = {"ops": {}, "sweep": {}}
    for op in LIFECYCLE_OPS:
        c50, c99, d50, added = [], [], [], []
        for rnd in runs.get(1, []):
            c = rnd["chcp"]["ops"].get(op, {})
            d = rnd["direct"]["ops"].get(op, {})
            c50.append(c.get("p50_us"))
            c99.append(c.get("p99_us"))
            d50.append(d.get("p50_us"))
            if c.get("p50_us") is not None and d.get("p50_us") is not None:
                added.append(c["p50_us"] - d["p50_us"])
        out["ops"][op] = {
            "chcp_p50_us": median(c50), "chcp_p99_us": median(c99), "direct_p50_us": median(d50),
            "added_p50_us": median(added), "added_rounds_us": added,
        }
    for c, rounds in runs.items():
        ch = [r["chcp"]["cycles_per_s"] for r in rounds]
        di = [r["direct"]["cycles_per_s"] for r in rounds]
        ratio = [a / b for a, b in zip(ch, di) if b]
        out["sweep"][str(c)] = {
            "chcp_cycles_per_s": median(ch), "direct_cycles_per_s": median(di),
            "ratio": median(ratio), "ratio_rounds": ratio,
            "chcp_rounds": ch, "direct_rounds": di,
            "busy_retries": sum(r["chcp"].get("busy_retries", 0) for r in rounds),
            "errors": sum(r["chcp"]["errors"] for r in rounds),
            "first_error": next((r["chcp"].get("first_error") for r in rounds if r["chcp"].get("first_error")), None),
        }
    out["added_p50_us"] = {op: out["ops"][op]["added_p50_us"] for op in LIFECYCLE_OPS}
    best = max(out["sweep"], key=lambda c: out["sweep"][c]["chcp_cycles_per_s"] or 0)
    out["concurrency"] = int(best)
    out["cycles_per_s"] = out["sweep"][best]["chcp_cycles_per_s"]
    return out


def targets_check(summary, lifecycle, memory):
    """Each target of the brief with the measured value and met/missed."""
    checks = []

    def add(name, value, ok, unit=""):
        checks.append(
            {"target": name, "value": value, "unit": unit, "met": None if value is None else bool(ok)}
        )

    for sc, per_t in summary.items():
        sp = per_t.get("speedup")
        add("chcp >= 3x connect-go req/s (%s)" % sc, sp, sp is not None and sp >= 3, "x")
        c = per_t.get("chcp", {})
        p99 = c.get("p99_us")
        add("chcp p99 < 1 ms at half load (%s)" % sc, p99, p99 is not None and p99 < 1000, "us")
    if lifecycle:
        for op, a in lifecycle.get("added_p50_us", {}).items():
            add("chcp adds <= 0.5 ms p50 (%s)" % op, a, a is not None and a <= 500, "us")
        for c, sw in sorted(lifecycle.get("sweep", {}).items(), key=lambda kv: int(kv[0])):
            if c == "1":
                continue
            r = sw.get("ratio")
            add("cycles/s >= 90%% of stand-in alone, c=%s" % c, None if r is None else 100 * r,
                r is not None and r >= 0.9, "%")
            add("client retries = 0, c=%s" % c, sw.get("busy_retries"), sw.get("busy_retries") == 0, "")
        cps = lifecycle.get("cycles_per_s")
        add("cycles/s >= 200", cps, cps is not None and cps >= 200, "/s")
    if memory:
        per = memory.get("kib_per_vm")
        add("< 64 KiB per VM", per, per is not None and per < 64, "KiB")
    return checks


def print_table(res):
    p = print
    meta = res["meta"]
    p()
    p("chcp benchmarks  %s  (%s, %d CPUs, %s)" % (meta["date"], meta["cpu"], meta["cpus"], meta["git_rev"]))
    la0, la1 = meta.get("load_avg_at_start"), meta.get("load_avg_at_end")
    if la0 and la1:
        p("machine load average (1 min) at start %.1f, at end %.1f" % (la0[0], la1[0]))
    p(
        "ListVms of %d VMs (%d-byte response); h2load -c %d, -m %d on h2c; %d rounds x %gs, medians"
        % (
            meta["vms"],
            meta.get("response_bytes", 0),
            meta["clients"],
            meta["streams"],
            meta["rounds"],
            meta["duration_s"],
        )
    )
    for note in res.get("notes", []):
        p("note: " + note)
    summary = res.get("rpc_summary", {})
    if summary:
        p()
        hdr = "%-14s %-11s %12s %10s %11s %10s %10s %8s"
        p(hdr % ("scenario", "server", "peak req/s", "CPU us/req", "half req/s", "p50", "p99", "errors"))
        for sc, per_t in summary.items():
            for t in ("chcp", "connect-go"):
                s = per_t.get(t)
                if not s:
                    continue
                p(
                    hdr
                    % (
                        sc,
                        t,
                        fmt(s["peak_rps"]),
                        fmt(s["cpu_us_per_req"], "", 1),
                        fmt(s["half_load_rps"]),
                        fmt(s["p50_us"], "us"),
                        fmt(s["p99_us"], "us"),
                        s["errors"],
                    )
                )
            if per_t.get("speedup"):
                p(
                    "%-14s %-11s %12s %10s  (req/s ratio; peer CPU per request / chcp's)"
                    % ("", "chcp/peer", fmt(per_t["speedup"], "x", 2), fmt(per_t.get("cpu_ratio"), "x", 2))
                )
        p()
        p("one connection, one request at a time, %s req/s (no queueing):" % meta.get("baseline_rate"))
        hdr = "%-14s %-11s %10s %10s"
        p(hdr % ("scenario", "server", "p50", "p99"))
        for sc, per_t in summary.items():
            for t in ("chcp", "connect-go"):
                s = per_t.get(t)
                if s:
                    p(hdr % (sc, t, fmt(s.get("base_p50_us"), "us"), fmt(s.get("base_p99_us"), "us")))
    mem = res.get("rss", {})
    if mem:
        p()
        p("%-11s %14s %14s %14s" % ("RSS", "idle (KiB)", "after load", "peak (HWM)"))
        for t, m in mem.items():
            p("%-11s %14s %14s %14s" % (t, fmt(m.get("idle_kib")), fmt(m.get("after_load_kib")), fmt(m.get("hwm_kib"))))
    lc = res.get("lifecycle")
    if lc:
        p()
        n1 = len(lc.get("rounds", {}).get("1", []))
        p("lifecycle (create -> boot -> shutdown(force) -> delete) against the CH stand-in, concurrency 1,")
        p("%d alternating rounds; medians of the rounds' p50/p99; 'adds' = median of the per-round p50 differences" % n1)
        hdr = "%-10s %12s %12s %14s %14s"
        p(hdr % ("op", "chcp p50", "chcp p99", "stand-in p50", "chcp adds p50"))
        for op in LIFECYCLE_OPS:
            o = lc.get("ops", {}).get(op, {})
            p(hdr % (op, fmt(o.get("chcp_p50_us"), "us"), fmt(o.get("chcp_p99_us"), "us"),
                     fmt(o.get("direct_p50_us"), "us"), fmt(o.get("added_p50_us"), "us")))
        for c, sw in sorted(lc.get("sweep", {}).items(), key=lambda kv: int(kv[0])):
            p(
                "cycles/s at concurrency %3s: chcp %8s  stand-in alone %8s  ratio %6s  (retries %d, errors %d)"
                % (c, fmt(sw["chcp_cycles_per_s"], "", 1), fmt(sw["direct_cycles_per_s"], "", 1),
                   fmt(None if sw.get("ratio") is None else 100 * sw["ratio"], "%", 0), sw["busy_retries"],
                   sw["errors"])
            )
    if res.get("memory"):
        m = res["memory"]
        p()
        p(
            "memory: fresh chcp, %d VMs defined: RSS %s -> %s KiB, %s KiB per VM (created at %s VMs/s)"
            % (
                m["vms"],
                fmt(m["rss_before_kib"]),
                fmt(m["rss_after_kib"]),
                fmt(m["kib_per_vm"], "", 1),
                fmt(m.get("creates_per_s"), "", 0),
            )
        )
    checks = res.get("targets", [])
    if checks:
        p()
        p("targets (reported, not asserted):")
        for c in checks:
            state = "n/a" if c["met"] is None else ("met" if c["met"] else "MISSED")
            unit = c["unit"]
            val = fmt(c["value"], unit, {"x": 2, "KiB": 1}.get(unit, 0))
            p("  %-48s %12s  %s" % (c["target"], val, state))
    for s in res.get("skipped", []):
        p("skipped: " + s)
    p()


def write_json(res, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2, sort_keys=True, default=lambda o: None)
        f.write("\n")
    os.replace(tmp, path)
