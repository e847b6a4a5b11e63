"""conftest.py - the packaging tests install the chcp package on this machine
for real, so: root only, one run at a time per machine (a lock file), and only
where no chcp package, user or state exists already (they would not be the
test's to remove). Everything the tests create is removed afterwards: the
package (purged), the chcp user and group, the kvm group when the test made
it, /var/lib/chcp and /run/chcp."""

import fcntl
import glob
import os
import subprocess
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOCK = "/run/lock/chcp-packaging-test.lock"
STATE_PATHS = ("/var/lib/chcp", "/run/chcp")


def deb_path():
    path = os.environ.get("CHCP_DEB")
    if path:
        return path
    debs = sorted(glob.glob(os.path.join(REPO, "build", "chcp_*.deb")), key=os.path.getmtime)
    if not debs:
        raise pytest.UsageError("no build/chcp_*.deb: run make deb (make packaging-test does)")
    return debs[-1]


def standin_path():
    return os.environ.get("CHCP_STANDIN",
                          os.path.join(REPO, "build", "deb", "ch-standin", "cloud-hypervisor"))


def sh(*argv, check=True, timeout=120, **kw):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                      r.stderr))
    return r


def dpkg(*args, runner=None, timeout=300):
    """dpkg, retried while another process (apt on a shared machine) holds
    its lock; `runner` runs it elsewhere (inside a booted systemd)."""
    deadline = time.monotonic() + timeout
    while True:
        argv = ["dpkg"] + list(args)
        r = runner(*argv, check=False) if runner else sh(*argv, check=False)
        locked = r.returncode != 0 and "lock" in (r.stderr + r.stdout).lower()
        if not locked or time.monotonic() > deadline:
            if r.returncode != 0:
                raise AssertionError("dpkg %s exited %d:\n%s%s" % (" ".join(args), r.returncode,
                                                                  r.stdout, r.stderr))
            return r
        time.sleep(2)


def exists_user(name):
    return sh("getent", "passwd", name, check=False).returncode == 0


def exists_group(name):
    return sh("getent", "group", name, check=False).returncode == 0


def installed(pkg="chcp"):
    r = sh("dpkg-query", "-W", "-f=${Status}", pkg, check=False)
    return r.returncode == 0 and "installed" in r.stdout and "not-installed" not in r.stdout


@pytest.fixture(scope="session")
def machine():
    """The machine, locked for this run and checked to be free of chcp."""
    if os.geteuid() != 0:
        pytest.skip("the packaging tests install a package: they need root")
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run on this machine finishes first
        present = [p for p in STATE_PATHS if os.path.exists(p)]
        if installed() or exists_user("chcp") or present:
            pytest.fail("chcp is already on this machine (package, user or %s): the packaging "
                        "tests would remove it; run them on a machine without it"
                        % ", ".join(present or STATE_PATHS))
        kvm_existed = exists_group("kvm")
        try:
            yield {"kvm_existed": kvm_existed}
        finally:
            cleanup(kvm_existed)


def cleanup(kvm_existed):
    if installed() or sh("dpkg-query", "-W", "chcp", check=False).returncode == 0:
        dpkg("--purge", "chcp")
    if exists_user("chcp"):
        sh("userdel", "chcp", check=False)
    if exists_group("chcp"):
        sh("groupdel", "chcp", check=False)
    if not kvm_existed and exists_group("kvm"):
        sh("groupdel", "kvm", check=False)
    for p in STATE_PATHS:
        sh("rm", "-rf", p)
