"""Stand-in tests: the jailer stand-in (tests/fc-standin/jailer) around the static
Firecracker stand-in: a real chroot, mount namespace, device nodes, uid/gid switch,
PID namespace and daemonization. They need root, as the jailer does."""

import ctypes
import os
import shutil
import signal
import stat
import subprocess
import time

import pytest

from fcclient import Conn, make_kernel, wait_listening

JAILER = os.environ.get("FC_JAILER", "")
STATIC = os.environ.get("FC_STANDIN_STATIC", "")
NOBODY = 65534

pytestmark = [
    pytest.mark.skipif(not (JAILER and STATIC), reason="FC_JAILER/FC_STANDIN_STATIC not set "
                       "(run: make fc-standin-test)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the jailer needs root (mknod, pivot_root, "
                       "setuid); make test runs as root"),
]


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    """Daemonized and PID-namespaced jails outlive the jailer: adopt and reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    yield


def jail_root(base, jail_id):
    return os.path.join(str(base), "firecracker", jail_id, "root")


def jailer(base, jail_id="j1", extra=(), fc_args=("--api-sock", "/run/api.sock"), wait=False):
    argv = [JAILER, "--id", jail_id, "--exec-file", STATIC, "--uid", str(NOBODY), "--gid",
            str(NOBODY), "--chroot-base-dir", str(base), *extra, "--", *fc_args]
    if wait:  # the jailed process may keep stdio open: read files, not pipes, after the exit
        out, err = str(base) + f"/{jail_id}.out", str(base) + f"/{jail_id}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            rc = subprocess.run(argv, stdout=o, stderr=e, timeout=15, env={}).returncode
        return subprocess.CompletedProcess(argv, rc, open(out, "rb").read(), open(err, "rb").read())
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={})


def wait_path(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def api(root, method, path, body=None):
    c = Conn(os.path.join(root, "run", "api.sock"))
    try:
        return c.request(method, path, body)
    finally:
        c.close()


def stop(p):
    """End a jailer Popen (by then Firecracker, exec'd in place) and close its pipes."""
    if p.poll() is None:
        p.kill()
    p.wait(10)
    p.stdout.close()
    p.stderr.close()


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def reap(pid):
    """Kill an adopted jail process, and reap every orphan the jailer left us."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break


def test_version_help_and_argument_errors(tmp_path):
    r = subprocess.run([JAILER, "--version"], capture_output=True, env={})
    assert r.returncode == 0 and r.stdout == b"Jailer v1.17.0-dev\n\n"
    r = subprocess.run([JAILER, "--help"], capture_output=True, env={})
    out = r.stdout.decode()
    assert out.startswith("Jailer v1.17.0-dev\n\nrequired arguments:\n  --exec-file <exec-file>")
    assert "\noptional arguments:\n" in out and '[default: "/srv/jailer"]' in out
    assert out.endswith("Any arguments after the -- separator will be supplied to the jailed "
                        "binary.\n\n")
    r = subprocess.run([JAILER, "--id", "a", "--uid", "0"], capture_output=True, env={})
    assert r.returncode == 1
    assert r.stderr.decode() == ("Failed to parse arguments: Argument 'exec-file' required, but "
                                 "not found.\nError: ArgumentParsing(MissingArgument(\"exec-file\"))\n")


@pytest.mark.parametrize("change,display", [
    ({"--id": "a_b"}, "Invalid instance ID: Invalid char (_) at position 1"),
    ({"--exec-file": "/nonexistent/firecracker"},
     "Failed to canonicalize path /nonexistent/firecracker: No such file or directory (os error 2)"),
    ({"--exec-file": "/"}, "/ is not a file"),
    ({"--chroot-base-dir": "FILE"}, "is not a directory"),
    ({"--uid": "nobody"}, "Invalid uid: nobody"),
    ({"--gid": "-1"}, "Invalid gid: -1"),
    ({"--cgroup-version": "x"}, "x is an invalid cgroup version specifier"),
    ({"--parent-cgroup": "../up"},
     "Parent cgroup path is invalid. Path should not be absolute or contain '..' or '.'"),
    ({"--cgroup": "cpu.shares"}, "Invalid format for cgroups: cpu.shares"),
    ({"--cgroup": "cpu.shares=10"}, "standin: --cgroup is not supported"),
    ({"--resource-limit": "no-file"}, "Invalid format for resources limits: no-file"),
    ({"--resource-limit": "stack=10"}, "Invalid resource argument: stack"),
    ({"--resource-limit": "fsize=big"},
     "Invalid limit value for resource: big: invalid digit found in string"),
])
def test_validation_errors(tmp_path, change, display):
    (tmp_path / "file").write_text("")
    opts = {"--id": "j1", "--exec-file": STATIC, "--uid": str(NOBODY), "--gid": str(NOBODY),
            "--chroot-base-dir": str(tmp_path)}
    opts.update({k: v.replace("FILE", str(tmp_path / "file")) for k, v in change.items()})
    argv = [JAILER] + [x for kv in opts.items() for x in kv]
    r = subprocess.run(argv, capture_output=True, env={})
    assert r.returncode == 1
    err = r.stderr.decode().splitlines()
    assert display in err[0] and err[1].startswith("Error: ")
    assert not os.path.exists(tmp_path / "firecracker")  # nothing is built before validation


def test_jailed_firecracker(tmp_path):
    root = jail_root(tmp_path, "j1")
    p = jailer(tmp_path)
    try:
        wait_listening(os.path.join(root, "run", "api.sock"))
        # The jailer execs in place: same pid, now Firecracker, as nobody, in its own mounts.
        assert open(os.path.join(root, "firecracker.pid")).read() == str(p.pid)
        st = status(p.pid)
        assert st["Uid"].split()[0] == str(NOBODY) and st["Gid"].split()[0] == str(NOBODY)
        assert st["Groups"].strip() == ""
        assert os.readlink(f"/proc/{p.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        argv = open(f"/proc/{p.pid}/cmdline").read().split("\0")
        assert argv[:3] == ["/firecracker", "--id", "j1"]
        assert argv[3] == "--start-time-us" and argv[5] == "--start-time-cpu-us"
        assert argv[7] == "--parent-cpu-time-us" and argv[9:11] == ["--api-sock", "/run/api.sock"]
        # The jail as the jailer leaves it.
        for d in ("", "dev", "dev/net", "run"):
            s = os.stat(os.path.join(root, d))
            assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (NOBODY, NOBODY, 0o700), d
        for dev, (major, minor) in {"dev/kvm": (10, 232), "dev/net/tun": (10, 200),
                                    "dev/urandom": (1, 9)}.items():
            s = os.stat(os.path.join(root, dev))
            assert stat.S_ISCHR(s.st_mode) and (os.major(s.st_rdev), os.minor(s.st_rdev)) == \
                (major, minor) and s.st_uid == NOBODY, dev
        copy = os.stat(os.path.join(root, "firecracker"))
        assert copy.st_uid == NOBODY and copy.st_ino != os.stat(STATIC).st_ino  # a copy
        # Paths in API calls are inside the jail.
        r = api(root, "GET", "/")
        assert r.json()["id"] == "j1"
        kernel = make_kernel(tmp_path)
        r = api(root, "PUT", "/boot-source", {"kernel_image_path": kernel})
        assert r.status == 400 and "No such file or directory" in r.fault()
        os.link(kernel, os.path.join(root, "vmlinux"))
        r = api(root, "PUT", "/boot-source", {"kernel_image_path": "/vmlinux",
                                              "boot_args": "console=ttyS0 reboot=k"})
        assert r.status == 204
        assert api(root, "PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
        deadline = time.monotonic() + 10
        out = b""
        while b"Run /sbin/init" not in out:
            assert time.monotonic() < deadline
            out += os.read(p.stdout.fileno(), 65536)
        assert api(root, "PUT", "/actions", {"action_type": "SendCtrlAltDel"}).status == 204
        assert p.wait(10) == 0
    finally:
        stop(p)


def test_a_jail_is_not_reusable(tmp_path):
    p = jailer(tmp_path)
    wait_path(os.path.join(jail_root(tmp_path, "j1"), "run", "api.sock"))
    stop(p)
    r = jailer(tmp_path, wait=True)  # the caller must remove the jail first
    assert r.returncode == 1
    assert r.stderr.decode().splitlines()[0] == (
        "Failed to create /dev/net/tun via mknod inside the jail: File exists (os error 17)")
    shutil.rmtree(os.path.join(str(tmp_path), "firecracker", "j1"))
    p = jailer(tmp_path)
    wait_path(os.path.join(jail_root(tmp_path, "j1"), "run", "api.sock"))
    stop(p)


def test_new_pid_ns(tmp_path):
    root = jail_root(tmp_path, "j1")
    r = jailer(tmp_path, extra=["--new-pid-ns"], wait=True)
    assert r.returncode == 0  # the jailer leaves once the child is cloned
    wait_path(os.path.join(root, "firecracker.pid"))
    pid = int(open(os.path.join(root, "firecracker.pid")).read())
    try:
        wait_listening(os.path.join(root, "run", "api.sock"))
        assert status(pid)["NSpid"].split() == [str(pid), "1"]  # init of its PID namespace
        assert api(root, "GET", "/").json()["id"] == "j1"
        os.kill(pid, signal.SIGTERM)  # init ignores signals it has no handler for
        time.sleep(0.2)
        assert api(root, "GET", "/").status == 200
        os.kill(pid, signal.SIGHUP)  # Firecracker handles SIGHUP: exit 156
        _, st = os.waitpid(pid, 0)
        assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 156
    finally:
        reap(pid)


def test_daemonize(tmp_path):
    root = jail_root(tmp_path, "j1")
    r = jailer(tmp_path, extra=["--daemonize"], wait=True)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    wait_listening(os.path.join(root, "run", "api.sock"))
    pid = int(open(os.path.join(root, "firecracker.pid")).read())
    try:
        assert os.readlink(f"/proc/{pid}/fd/1") == "/dev/null"
        assert os.getsid(pid) != pid  # double fork: not a session leader
        assert api(root, "GET", "/").json()["state"] == "Not started"
    finally:
        reap(pid)


def test_resource_limits_and_netns(tmp_path):
    ip = shutil.which("ip")
    if not ip:
        pytest.skip("iproute2 (ip) is missing: the netns part needs it")
    ns = f"fcsi-{os.getpid()}"
    subprocess.run([ip, "netns", "add", ns], check=True)
    p = None
    try:
        p = jailer(tmp_path, extra=["--netns", f"/run/netns/{ns}", "--resource-limit",
                                    "no-file=123", "--resource-limit", "fsize=1048576"])
        wait_path(os.path.join(jail_root(tmp_path, "j1"), "run", "api.sock"))
        assert os.stat(f"/proc/{p.pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
        limits = open(f"/proc/{p.pid}/limits").read()
        assert "Max open files            123                  123" in limits
        assert "Max file size             1048576              1048576" in limits
    finally:
        if p:
            stop(p)
        subprocess.run([ip, "netns", "del", ns], check=True)
    r = jailer(tmp_path, jail_id="j2", extra=["--netns", "/run/netns/none-such"], wait=True)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("Failed to open file /run/netns/none-such: No such file")
