#!/usr/bin/env python3
"""quickstart.py - run the README's quick start, verbatim, in a fresh clone.

The README marks the blocks to run with an HTML comment on the line before
the fence (invisible on GitHub):

    <!-- quickstart: build -->    run in the clone, in order
    <!-- quickstart: daemon -->   started in the background; the quick start's
                                  "it stays in the foreground"
    <!-- quickstart: client -->   run once the daemon answers /health

The clone is `git clone` of this repository plus the working tree's changes to
tracked and new (not ignored) files, so the test sees what a fresh clone of
the commit being tested would see, and nothing built or installed here. Build
blocks run in it as they are. The daemon and client blocks run in new PID,
mount and network namespaces: /tmp is a private tmpfs (the quick start uses
/tmp/chcp and /tmp/images) and the network is a private loopback (it uses port
8080), so the blocks run unchanged without touching the machine or other test
runs, and every process they start ends with the namespace.

Passes when every command of every block exits 0 (bash -e -o pipefail; the
quick start uses curl -f, so a failed call fails it), the client output shows
what the README says it shows, and the daemon exits 0 on SIGTERM.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(REPO, "build", "quickstart")
MARK = re.compile(r"^<!-- quickstart: (build|daemon|client) -->\s*$")

# What the client blocks print, in order (the README's comments say so):
# the curl calls, then chcpctl's.
EXPECTED = [r"^ok$", r'"state":\s*"VM_STATE_CREATED"', r'"state":\s*"VM_STATE_RUNNING"',
            r'"vms":\s*\[', r'^\{"vmId":\s*"web-1"\}$',
            r"^web-1: running$", r"^web-1 +running +2 +1 GiB ", r'^\{"vmId":"web-1".*"state":"VM_STATE_RUNNING"',
            r"^web-1: shutdown$", r"^web-1: deleted$"]

DRIVER = r"""
set -euo pipefail
mount -t tmpfs tmpfs /tmp
ip link set lo up
cd "$CLONE"
bash -euo pipefail "$QS/daemon.sh" > "$QS/daemon.log" 2>&1 &
shell=$!
for _ in $(seq 600); do
    curl -fsS -o /dev/null localhost:8080/health 2>/dev/null && break
    kill -0 "$shell" 2>/dev/null || { echo "quickstart: the daemon block exited"; exit 1; }
    sleep 0.1
done
curl -fsS -o /dev/null localhost:8080/health || { echo "quickstart: no /health after 60 s"; exit 1; }
rc=0
bash -euo pipefail "$QS/client.sh" > "$QS/client.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || echo "quickstart: the client block failed with $rc"
# The daemon is the block's last command, a child of its shell.
api=$(pgrep -P "$shell" -x chcp-api || true)
[ -n "$api" ] || { echo "quickstart: chcp-api is not running"; exit 1; }
kill -TERM "$api"
drc=0
wait "$shell" || drc=$?
[ "$drc" = 0 ] || { echo "quickstart: the daemon exited with $drc after SIGTERM"; exit 1; }
exit "$rc"
"""


def fail(msg, *files):
    print("quickstart: FAILED: " + msg)
    for f in files:
        if os.path.exists(f):
            print("---- %s\n%s" % (os.path.basename(f), open(f, errors="replace").read()[-6000:]))
    sys.exit(1)


def blocks(readme):
    """{kind: [block text]} in README order."""
    out = {"build": [], "daemon": [], "client": []}
    lines = open(readme).read().splitlines()
    i = 0
    while i < len(lines):
        m = MARK.match(lines[i])
        if not m:
            i += 1
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            fail("README line %d: a quickstart mark not followed by a code fence" % (i + 1))
        j = i + 2
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        out[m.group(1)].append("\n".join(lines[i + 2:j]) + "\n")
        i = j + 1
    if not out["build"] or len(out["daemon"]) != 1 or not out["client"]:
        fail("README must mark build blocks, one daemon block and client blocks: found %s"
             % {k: len(v) for k, v in out.items()})
    return out


def fresh_clone(dest):
    subprocess.run(["git", "clone", "-q", REPO, dest], check=True)
    changed = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--modified", "--others",
                              "--exclude-standard"], check=True, capture_output=True,
                             text=True).stdout.split("\0")
    deleted = set(subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--deleted"], check=True,
                                 capture_output=True, text=True).stdout.split("\0"))
    for f in filter(None, changed):
        src, dst = os.path.join(REPO, f), os.path.join(dest, f)
        if f in deleted or not os.path.lexists(src):
            if os.path.lexists(dst):
                os.unlink(dst)
            continue
        if os.path.islink(src) or os.path.isdir(src):
            continue  # .tools and the like: not the repository's content
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)


def clean_env():
    """The caller's build settings (make test exports B=build/asan) and any
    chcp variables must not leak into what a reader would type."""
    drop = {"B", "SAN", "CC", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "EXTRA_CFLAGS",
            "EXTRA_LDFLAGS", "ASAN_OPTIONS", "UBSAN_OPTIONS", "NOTIFY_SOCKET", "JOURNAL_STREAM"}
    return {k: v for k, v in os.environ.items()
            if k not in drop and not k.startswith(("CHCP_", "UNKEY_"))}


def main():
    if os.geteuid() != 0:
        fail("the quick start says 'as root' (make deps, namespaces)")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    clone = os.path.join(WORK, "chcp")
    fresh_clone(clone)
    qs = os.path.join(WORK, "run")
    os.makedirs(qs)
    b = blocks(os.path.join(clone, "README.md"))
    env = clean_env()

    for n, block in enumerate(b["build"]):
        path = os.path.join(qs, "build%d.sh" % n)
        open(path, "w").write(block)
        log = os.path.join(qs, "build%d.log" % n)
        with open(log, "w") as f:
            r = subprocess.run(["bash", "-euo", "pipefail", path], cwd=clone, env=env,
                               stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            fail("build block %d exited %d:\n%s" % (n, r.returncode, block), log)

    open(os.path.join(qs, "daemon.sh"), "w").write(b["daemon"][0])
    open(os.path.join(qs, "client.sh"), "w").write("\n".join(b["client"]))
    driver = os.path.join(qs, "driver.sh")
    open(driver, "w").write(DRIVER)
    env.update(CLONE=clone, QS=qs)
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--net",
                        "--propagation", "private", "bash", driver], env=env,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    logs = [os.path.join(qs, f) for f in ("client.out", "daemon.log")]
    if r.returncode != 0:
        fail("daemon/client blocks (exit %d): %s%s" % (r.returncode, r.stdout, r.stderr), *logs)
    out = open(logs[0]).read()
    pos = 0
    lines = out.splitlines()
    for pattern in EXPECTED:
        while pos < len(lines) and not re.search(pattern, lines[pos]):
            pos += 1
        if pos == len(lines):
            fail("client output lacks %r (in order)" % pattern, *logs)
        pos += 1
    daemon_log = open(logs[1]).read()
    errors = [l for l in daemon_log.splitlines() if '"level":"error"' in l]
    if errors:
        fail("the daemon logged errors", *logs)
    print(textwrap.indent(out, "  | "))
    print("quickstart: ok (%d build, 1 daemon, %d client block(s))" % (len(b["build"]),
                                                                       len(b["client"])))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
