"""Fixtures for the networking suite: a network namespace per test (the host's
own namespace is never touched), a state directory, and `net-tool` /
`net-vm` (tests/net/*.c) run inside the namespace with CHCP_NET_* settings.

Every call of net-tool is a new process: what one call allocated, the next
must find in the state directory - that is the restart the IPAM promises to
survive.
"""
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

NET_TOOL = os.environ.get("NET_TOOL", "")
NET_VM = os.environ.get("NET_VM", "")
GUEST_DIR = os.environ.get("GUEST_DIR", "")
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
BOOT_TIMEOUT = float(os.environ.get("QEMU_BOOT_TIMEOUT", "120"))

_counter = [0]


def run(*cmd, check=True, timeout=60):
    r = subprocess.run(list(cmd), capture_output=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd}: exit {r.returncode}: {r.stderr.decode()}{r.stdout.decode()}")
    return r


class Netns:
    def __init__(self, name):
        self.name = name

    def sh(self, *cmd, check=True, timeout=60):
        return run("ip", "netns", "exec", self.name, *cmd, check=check, timeout=timeout)

    def out(self, *cmd):
        return self.sh(*cmd).stdout.decode()

    def links(self):
        """name -> `ip -d -j link` object"""
        return {l["ifname"]: l for l in json.loads(self.out("ip", "-d", "-j", "link", "show"))}

    def addrs(self, dev):
        info = json.loads(self.out("ip", "-j", "addr", "show", "dev", dev))[0]
        return sorted(f'{a["local"]}/{a["prefixlen"]}' for a in info["addr_info"]
                      if a.get("scope") != "link")

    def nft_rules(self, table="chcp"):
        """[(chain, comment, handle)] of table inet <table>, [] when it does not exist."""
        r = self.sh("nft", "-j", "-a", "list", "table", "inet", table, check=False)
        if r.returncode != 0:
            return []
        items = json.loads(r.stdout)["nftables"]
        return [(i["rule"]["chain"], i["rule"].get("comment"), i["rule"]["handle"])
                for i in items if "rule" in i]

    def nft_chains(self, table="chcp"):
        r = self.sh("nft", "-j", "list", "table", "inet", table, check=False)
        if r.returncode != 0:
            return []
        return sorted(i["chain"]["name"] for i in json.loads(r.stdout)["nftables"] if "chain" in i)


def _new_netns():
    _counter[0] += 1
    name = f"chcpnet{os.getpid()}x{_counter[0]}"
    run("ip", "netns", "add", name)
    run("ip", "-n", name, "link", "set", "lo", "up")
    return Netns(name)


@pytest.fixture
def netns():
    ns = _new_netns()
    yield ns
    subprocess.run(["ip", "netns", "delete", ns.name], capture_output=True)


@pytest.fixture
def netns_factory():
    made = []

    def make():
        ns = _new_netns()
        made.append(ns)
        return ns

    yield make
    for ns in made:
        subprocess.run(["ip", "netns", "delete", ns.name], capture_output=True)


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    return str(d)


def clean_env(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHCP_NET_")}
    env.update(settings)
    return env


class Tool:
    """net-tool in a namespace with fixed settings; call(...) -> (status, json)."""

    def __init__(self, ns, state, **settings):
        assert NET_TOOL and os.path.exists(NET_TOOL), "NET_TOOL not built (make net-test)"
        self.ns, self.state = ns, state
        self.env = clean_env({f"CHCP_NET_{k.upper()}": str(v) for k, v in settings.items()})

    def call(self, *args, flags=()):
        cmd = ["ip", "netns", "exec", self.ns.name, NET_TOOL, "--state", self.state,
               *flags, *args]
        r = subprocess.run(cmd, capture_output=True, env=self.env, timeout=120)
        out = r.stdout.decode().strip()
        try:
            doc = json.loads(out.splitlines()[-1]) if out else None
        except json.JSONDecodeError:
            raise AssertionError(f"net-tool said: {out!r} {r.stderr.decode()}")
        return r.returncode, doc

    def ok(self, *args, **kw):
        rc, doc = self.call(*args, **kw)
        assert rc == 0, f"net-tool {args}: {doc}"
        return doc

    def error(self, *args, code=None, status=1, **kw):
        rc, doc = self.call(*args, **kw)
        assert rc == status and "error" in doc, f"net-tool {args} should fail: {doc}"
        if code:
            assert doc["error"]["code"] == code, doc
        return doc["error"]["message"]


# ---- QEMU ---------------------------------------------------------------------------------

def qemu_unusable():
    if not os.path.exists(QEMU):
        return "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
    r = subprocess.run([QEMU, "-machine", "microvm", "-accel", "tcg", "-nodefaults", "-display",
                        "none", "-S", "-no-user-config", "-qmp", "stdio"],
                       input=b'{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        return f"qemu-system-x86_64 cannot start: {r.stderr.decode(errors='replace')[-300:]}"
    return None


class GuestVm:
    """One net-vm process: chcp's networking for the VM, then QEMU with the
    TAP descriptors. Messages are collected by a thread."""

    def __init__(self, ns, state, vm_dir, vm_id, settings, args):
        os.makedirs(vm_dir, mode=0o700, exist_ok=True)
        self.dir = vm_dir
        cmd = ["ip", "netns", "exec", ns.name, NET_VM, "--state", state, "--vm", vm_id, "--dir",
               vm_dir, "--kernel", os.path.join(GUEST_DIR, "vmlinux"), "--initrd",
               os.path.join(GUEST_DIR, "initrd.img"), "--qemu", QEMU] + list(args)
        env = clean_env({f"CHCP_NET_{k.upper()}": str(v) for k, v in settings.items()})
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.msgs, self.cv = [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cv:
                self.msgs.append(json.loads(line))
                self.cv.notify_all()
        with self.cv:
            self.msgs.append({"eof": True})
            self.cv.notify_all()

    def wait(self, key, timeout=60):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for m in self.msgs:
                    if key in m:
                        return m[key]
                    if "error" in m:
                        raise AssertionError(f"net-vm: {m['error']}")
                if time.monotonic() > deadline or (self.msgs and "eof" in self.msgs[-1]):
                    raise AssertionError(f"no {key}: {self.msgs} "
                                         f"{self.proc.stderr.read1().decode() if self.proc.poll() is not None else ''}")
                self.cv.wait(1)

    def net(self):
        return self.wait("net")

    def console(self):
        try:
            with open(os.path.join(self.dir, "console.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_console(self, text, timeout=BOOT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.console():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"console: {text!r} not seen in {timeout}s:\n{self.console()[-2000:]}"
                             f"\nnet-vm: {self.msgs[-6:]}")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # net-vm SIGKILLs QEMU and exits
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def qemu_ok():
    why = qemu_unusable()
    if why:
        pytest.skip(why)
    assert NET_VM and os.path.exists(NET_VM), "NET_VM not built (make net-test)"
    for f in ("vmlinux", "initrd.img"):
        assert os.path.exists(os.path.join(GUEST_DIR, f)), f"guest {f} missing (make guest)"
    return True


@pytest.fixture
def guest_factory(qemu_ok, tmp_path):
    vms = []

    def make(ns, state, vm_id, settings, *args):
        vm = GuestVm(ns, state, str(tmp_path / vm_id), vm_id, settings, args)
        vms.append(vm)
        return vm

    yield make
    for vm in vms:
        vm.close()


def ping(ns, addr, count=3, ok=True, tries=20):
    """ping from the namespace; the guest may still be bringing its link up."""
    last = None
    for _ in range(tries if ok else 1):
        last = ns.sh("ping", "-c", str(count), "-i", "0.3", "-W", "2", addr, check=False,
                     timeout=60)
        if (last.returncode == 0) == ok:
            return
        time.sleep(0.5)
    raise AssertionError(f"ping {addr} {'failed' if ok else 'answered'}: "
                         f"{last.stdout.decode()}{last.stderr.decode()}")


def http_get(ns, url, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = ns.sh("curl", "-sS", "-g", "--max-time", "5", url, check=False, timeout=30)
        if last.returncode == 0:
            return last.stdout.decode()
        time.sleep(0.5)
    raise AssertionError(f"GET {url} failed: {last.stderr.decode() if last else ''}")
