"""Fixtures for the QEMU suite: a real qemu-system-x86_64 run through chcp's
src/vmm/qemu code (the qemu-driver program), a real Linux guest
(tests/guest/build.sh) and, for networking, a network namespace of the test's
own with a TAP device in it.

Timeouts are generous on purpose: the build machines are shared and a TCG boot
that takes 1.5 s idle can take 15 s under load. Nothing here asserts timing.
"""
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
DRIVER = os.environ.get("QEMU_DRIVER", "")
KVM_PROBE = os.environ.get("KVM_PROBE", "")
GUEST_DIR = os.environ.get("GUEST_DIR", "")
BOOT_TIMEOUT = float(os.environ.get("QEMU_BOOT_TIMEOUT", "90"))


def _qemu_unusable():
    if not os.path.exists(QEMU):
        return "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
    try:
        r = subprocess.run([QEMU, "-machine", "microvm", "-accel", "tcg", "-nodefaults",
                            "-display", "none", "-S", "-no-user-config", "-qmp", "stdio"],
                           input=b'{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"qemu-system-x86_64 cannot start: {e}"
    if r.returncode != 0:
        return f"qemu-system-x86_64 cannot start: {r.stderr.decode(errors='replace')[-300:]}"
    return None


@pytest.fixture(scope="session")
def qemu_ok():
    why = _qemu_unusable()
    if why:
        pytest.skip(why)
    for what, path in (("QEMU_DRIVER", DRIVER), ("GUEST_DIR", GUEST_DIR)):
        assert path and os.path.exists(path), f"{what} not built (run `make qemu-test`)"
    for f in ("vmlinux", "bzImage", "initrd.img", "tiny.elf"):
        assert os.path.exists(os.path.join(GUEST_DIR, f)), f"guest {f} missing"
    return True


def guest(name):
    return os.path.join(GUEST_DIR, name)


class Vm:
    """One qemu-driver process (and so one QEMU). Messages from the driver are
    collected by a thread; tests wait for them with predicates."""

    def __init__(self, tmp_path, args, netns=None):
        self.dir = str(tmp_path / "vm")
        os.makedirs(self.dir, exist_ok=True)
        cmd = [DRIVER, "--dir", self.dir, "--qemu", QEMU] + args
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.msgs = []
        self.cv = threading.Condition()
        self.next_id = 100
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self.cv:
                self.msgs.append(msg)
                self.cv.notify_all()
        with self.cv:
            self.msgs.append({"eof": True})
            self.cv.notify_all()

    def wait(self, pred, timeout=30, what="message", start=0):
        """The first message from index `start` on that satisfies pred."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for m in self.msgs[start:]:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.msgs and "eof" in self.msgs[-1]):
                    raise AssertionError(f"no {what} within {timeout}s; driver said: "
                                         f"{self.msgs[-12:]}\nconsole: {self.console()[-1500:]}")
                self.cv.wait(left)

    def mark(self):
        with self.cv:
            return len(self.msgs)

    def event(self, name, start=0, timeout=30, **match):
        def pred(m):
            e = m.get("event")
            return e is not None and e["name"] == name and all(e.get(k) == v for k, v in match.items())
        return self.wait(pred, timeout, f"event {name} {match}", start)["event"]

    def send(self, obj):
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, obj, timeout=30):
        self.next_id += 1
        rid = self.next_id
        self.send(dict(obj, id=rid))
        m = self.wait(lambda m: "reply" in m and m["reply"]["id"] == rid, timeout, f"reply {rid}")
        return m["reply"]

    def qmp(self, command, arguments=None, timeout=30, ok=True):
        req = {"execute": command}
        if arguments is not None:
            req["arguments"] = arguments
        r = self.request(req, timeout)
        if ok:
            assert "error" not in r, f"{command}: {r.get('error')}"
            return r["return"]
        return r

    def status(self):
        return self.qmp("query-status")["status"]

    def ready(self, timeout=30):
        r = self.wait(lambda m: "ready" in m, timeout, "QMP ready")["ready"]
        assert "error" not in r, r
        return r

    def console(self):
        try:
            with open(os.path.join(self.dir, "console.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_console(self, text, count=1, timeout=BOOT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console().count(text) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"console: {text!r} x{count} not seen within {timeout}s:\n"
                             f"{self.console()[-2000:]}\ndriver: {self.msgs[-8:]}")

    def exited(self, timeout=30):
        return self.wait(lambda m: "exit" in m, timeout, "QEMU exit")["exit"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the driver SIGKILLs QEMU and exits
            except OSError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)


@pytest.fixture
def vm_factory(qemu_ok, tmp_path):
    vms = []

    def make(args, netns=None, sub=None):
        vm = Vm(tmp_path / (sub or f"vm{len(vms)}"), args, netns)
        vms.append(vm)
        return vm

    yield make
    for vm in vms:
        vm.close()


def linux_args(*extra, append="quiet", machine="microvm"):
    kernel = guest("vmlinux" if machine == "microvm" else "bzImage")
    return ["--machine", machine, "--accel", "tcg", "--kernel", kernel,
            "--initrd", guest("initrd.img"), "--append", append] + list(extra)


@pytest.fixture
def netns():
    """A network namespace with tap0 at 192.0.2.1/24 (TEST-NET-1: traffic
    never leaves the namespace)."""
    name = f"chcpq{os.getpid()}x{int(time.monotonic() * 1000) % 100000}"
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", name, "tuntap", "add", "dev", "tap0", "mode", "tap")
        run("ip", "-n", name, "addr", "add", "192.0.2.1/24", "dev", "tap0")
        run("ip", "-n", name, "link", "set", "tap0", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def in_netns(ns, *cmd, timeout=30):
    return subprocess.run(["ip", "netns", "exec", ns] + list(cmd), capture_output=True,
                          timeout=timeout)


def http_get(ns, url, timeout=60):
    """GET with retries until the guest answers (it may still be starting)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = in_netns(ns, "curl", "-sS", "--max-time", "5", url)
        if last.returncode == 0:
            return last.stdout.decode()
        time.sleep(0.5)
    raise AssertionError(f"GET {url} failed: {last.stderr.decode() if last else ''}")


def make_seed(path, files, kind="vfat"):
    """A cloud-init NoCloud seed image labelled cidata (vfat via mtools, or
    iso9660 via genisoimage; neither needs root)."""
    src = str(path) + ".d"
    os.makedirs(src, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(src, name), "w") as f:
            f.write(text)
    if kind == "iso":
        subprocess.run(["genisoimage", "-quiet", "-o", str(path), "-V", "cidata", "-J", "-r",
                        src], check=True)
        return str(path)
    subprocess.run(["truncate", "-s", "2M", str(path)], check=True)
    subprocess.run(["mkfs.vfat", "-n", "CIDATA", str(path)], check=True, capture_output=True)
    for name in files:
        subprocess.run(["mcopy", "-i", str(path), os.path.join(src, name), "::" + name],
                       check=True)
    return str(path)


def make_state_disk(path):
    """The guest's boot counter: a raw disk starting with "CHCPSTATE 0"."""
    with open(path, "wb") as f:
        f.write(b"CHCPSTATE 0\n".ljust(4096, b"\0"))
    return str(path)
