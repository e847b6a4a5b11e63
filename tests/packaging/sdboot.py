"""sdboot.py - a real systemd, booted as PID 1 of its own namespaces, for tests
that need to start units on machines without systemd as PID 1 (CI).

systemd runs in new PID, mount, network, UTS, IPC and cgroup namespaces. In its
mount namespace /run, /tmp and /var/log/journal are private tmpfs (journal,
runtime units and notify sockets stay inside), /sys/fs/cgroup is a cgroup2 view
rooted at a subtree created for this boot, and the wants of sysinit.target,
timers.target, multi-user.target and getty.target are hidden, so only what a
unit under test depends on gets started (and the journal) and
nothing touches the host's sysctls, modules, timers or login. A policy-rc.d
that forbids starting services (container images have one) is replaced by one
that allows it, inside the namespace only. systemd sees a
container (`container=` set), so units conditioned on real hardware stay off.
The file system outside those mounts is the host's: dpkg run inside installs
for real. Killing PID 1 ends everything in the namespace.

    with NamespacedSystemd() as sd:      # raises Unavailable when it cannot boot
        sd.run("systemctl", "start", "foo.service")
"""

import os
import signal
import subprocess
import time

SYSTEMD = "/lib/systemd/systemd"
HIDDEN_WANTS = ("sysinit.target.wants", "timers.target.wants", "multi-user.target.wants",
                "getty.target.wants")
UNIT_DIRS = ("/lib/systemd/system", "/etc/systemd/system")
JOURNALD = "systemd-journald.socket systemd-journald-dev-log.socket systemd-journald.service"

INNER = r"""
set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
[ -d /var/log/journal ] && mount -t tmpfs tmpfs /var/log/journal
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /run/systemd/system /run/sdboot
for d in %(hidden)s; do
    for base in %(unit_dirs)s; do
        if [ -d "$base/$d" ]; then
            mkdir -p "/run/sdboot/$base/$d"
            mount --bind "/run/sdboot/$base/$d" "$base/$d"
        fi
    done
done
# Container images often carry a policy-rc.d that forbids maintainer scripts
# to start services (exit 101); this is a booted system, where they may.
if [ -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 0\n' > /run/sdboot/policy-rc.d
    chmod 0755 /run/sdboot/policy-rc.d
    mount --bind /run/sdboot/policy-rc.d /usr/sbin/policy-rc.d
fi
# The journal runs on every booted system (sysinit.target wants it).
printf '[Unit]\nDescription=sdboot test target\nWants=%(journald)s\nAfter=%(journald)s\n' \
    > /run/systemd/system/sdboot.target
export container=chcp-test
exec %(systemd)s --system --unit=sdboot.target
"""


class Unavailable(Exception):
    """systemd cannot be booted here (the reason is the message)."""


def cgroup2_root():
    """Where the host's cgroup2 hierarchy is mounted (unified or hybrid)."""
    for path in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(path, "cgroup.procs")) and \
                os.path.exists(os.path.join(path, "cgroup.subtree_control")):
            return path
    return None


class NamespacedSystemd:
    def __init__(self, boot_timeout=60):
        self.boot_timeout = boot_timeout
        self.proc = None
        self.pid = None
        self.cgroup = None

    # ---- lifecycle ---------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        if os.geteuid() != 0:
            raise Unavailable("needs root")
        if not os.access(SYSTEMD, os.X_OK):
            raise Unavailable("%s is not installed" % SYSTEMD)
        root = cgroup2_root()
        if not root:
            raise Unavailable("no cgroup2 hierarchy mounted")
        self.cgroup = os.path.join(root, "chcp-sdboot-%d" % os.getpid())
        try:
            os.mkdir(self.cgroup)
        except OSError as e:
            raise Unavailable("cannot create cgroup %s: %s" % (self.cgroup, e))
        cgroup_procs = os.path.join(self.cgroup, "cgroup.procs")

        def enter_cgroup():
            with open(cgroup_procs, "w") as f:
                f.write("0")

        script = INNER % {"hidden": " ".join(HIDDEN_WANTS), "unit_dirs": " ".join(UNIT_DIRS),
                          "systemd": SYSTEMD, "journald": JOURNALD}
        self.log = open(os.path.join("/tmp", "chcp-sdboot-%d.log" % os.getpid()), "w+")
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--net", "--uts", "--ipc", "--cgroup",
             "--mount-proc", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=enter_cgroup)
        self.pid = self._child_pid()
        deadline = time.monotonic() + self.boot_timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable("systemd exited with %d: %s" % (self.proc.returncode,
                                                                  self._log_tail()))
            r = self.run("systemctl", "is-system-running", check=False, timeout=10)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise Unavailable("systemd did not finish booting (state %r): %s"
                          % (state, self._log_tail()))

    def _child_pid(self):
        """unshare --fork: PID 1 of the namespace is unshare's child."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise Unavailable("unshare exited with %d: %s" % (self.proc.returncode,
                                                                  self._log_tail()))
            time.sleep(0.02)
        raise Unavailable("no PID 1 appeared in the new namespace")

    def _log_tail(self):
        try:
            self.log.seek(0)
            return self.log.read()[-2000:]
        except (OSError, ValueError, AttributeError):
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)  # PID 1 gone: the namespace goes
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.cgroup and os.path.isdir(self.cgroup):
            self._remove_cgroup()
        if getattr(self, "log", None):
            self.log.close()
            try:
                os.unlink(self.log.name)
            except OSError:
                pass
            self.log = None

    def _remove_cgroup(self):
        deadline = time.monotonic() + 10
        while True:
            dirs = [d for d, _, _ in os.walk(self.cgroup, topdown=False)]
            try:
                for d in dirs:
                    os.rmdir(d)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # the last processes are still being reaped

    # ---- inside -------------------------------------------------------------

    def run(self, *argv, check=True, timeout=60, input=None):
        """Run a command in all of the namespaces (as root)."""
        r = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "--"] + list(argv),
                           capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode,
                                                          r.stdout, r.stderr))
        return r

    def show(self, unit, *props):
        """systemctl show: {property: value}."""
        r = self.run("systemctl", "show", unit, "-p", ",".join(props))
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def write(self, path, text, mode=0o644):
        """Write a file in the namespace's mount view (e.g. under /run)."""
        self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod %o "$1"'
                 % mode, "sh", path, input=text)
