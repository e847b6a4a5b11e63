"""jaeger_tree.py - print recent traces from Jaeger's query API as trees.

Jaeger built from its Go module (scripts/o11y-deps.sh) has no UI assets:
they come from a separate JavaScript build that no package registry ships.
Its query API is complete, though, and this prints what the UI would show:

    python3 tests/o11y/jaeger_tree.py                       # service chcp, last 10 traces
    python3 tests/o11y/jaeger_tree.py --service chcp --limit 3 --url http://127.0.0.1:16686
    python3 tests/o11y/jaeger_tree.py --trace <trace id>

Each line: offset and duration in ms, kind, name, status, then attributes
and events (indented).
"""

import argparse
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import http_get, normalize_trace, parent_id, tags  # noqa: E402


def fetch(url):
    st, body = http_get(url, timeout=10)
    if st != 200:
        raise SystemExit("%s answered %d: %s" % (url, st, body[:300]))
    return [normalize_trace(t) for t in json.loads(body).get("data") or []]


def print_trace(trace, out=sys.stdout):
    spans = trace["spans"]
    ids = {s["spanID"] for s in spans}
    children = {}
    for s in spans:
        p = parent_id(s)
        children.setdefault(p if p in ids else None, []).append(s)
    t0 = min(s["startTime"] for s in spans)
    root_parent = next((parent_id(s) for s in children.get(None, []) if parent_id(s)), None)
    out.write("trace %s%s\n" % (trace["traceID"], "  (remote parent %s)" % root_parent if root_parent else ""))

    def walk(span, depth):
        t = tags(span)
        status = " ERROR" if t.get("error") is True else ""
        out.write("%s+%8.2f ms %8.2f ms  %-8s %s%s\n" % (
            "  " * depth, (span["startTime"] - t0) / 1e3, span["duration"] / 1e3, t.get("span.kind", ""),
            span["operationName"], status))
        for k, v in sorted(t.items()):
            if k not in ("span.kind", "error", "otel.status_code", "internal.span.format") \
                    and not k.startswith("otel.scope."):
                out.write("%s      %s = %s\n" % ("  " * depth, k, v))
        for log in span.get("logs", []):
            fields = ", ".join("%s=%s" % (f["key"], f["value"]) for f in log["fields"])
            out.write("%s      @%.2f ms %s\n" % ("  " * depth, (log["timestamp"] - t0) / 1e3, fields))
        for c in sorted(children.get(span["spanID"], []), key=lambda s: s["startTime"]):
            walk(c, depth + 1)

    for r in sorted(children.get(None, []), key=lambda s: s["startTime"]):
        walk(r, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:16686")
    ap.add_argument("--service", default="chcp")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--trace")
    a = ap.parse_args()
    if a.trace:
        traces = fetch("%s/api/traces/%s" % (a.url, a.trace))
    else:
        q = urllib.parse.urlencode({"service": a.service, "limit": a.limit, "lookback": "1h"})
        traces = fetch("%s/api/traces?%s" % (a.url, q))
    traces.sort(key=lambda t: min(s["startTime"] for s in t["spans"]))
    for t in traces:
        print_trace(t)
        print()


if __name__ == "__main__":
    main()
