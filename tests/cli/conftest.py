"""conftest.py - fixtures for chcpctl's tests (tests/cli/).

Every test runs the real chcpctl binary ($CHCPCTL_BIN, default
build/asan/chcpctl) as a subprocess, against a real chcp-api started with
tests/integration/harness.py on the Cloud Hypervisor stand-in. `ctl(...)`
runs chcpctl with a clean environment and fails the test on any sanitizer
report; the daemon fixtures stop the daemon with SIGTERM and require a clean
exit, as the integration suite does.
"""

import importlib.util
import os
import socket
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import (REPO, assert_no_leftover_vmms, assert_no_sanitizer_reports,  # noqa: E402
                     base_env, chcp_bin)

# The integration suite's daemon fixtures (start_daemon, vm_daemon), reused
# as they are: SIGTERM at teardown, exit 0 and no sanitizer report required.
_spec = importlib.util.spec_from_file_location(
    "integration_conftest", os.path.join(HERE, "..", "integration", "conftest.py"))
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)
start_daemon = _integration.start_daemon
vm_daemon = _integration.vm_daemon


def chcpctl_bin():
    path = os.environ.get("CHCPCTL_BIN", os.path.join(REPO, "build", "asan", "chcpctl"))
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def pytest_configure(config):
    for what, path in (("chcpctl", chcpctl_bin()), ("chcp-api", chcp_bin())):
        if not os.access(path, os.X_OK):
            raise pytest.UsageError(
                "%s not found at %s: make B=build/asan SAN=1 build (or set CHCPCTL_BIN/CHCP_BIN)"
                % (what, path))


class Ctl:
    """chcpctl bound to an endpoint (None: whatever the command line says)."""

    def __init__(self, endpoint=None, env=None):
        self.endpoint = endpoint
        self.env = dict(env or {})

    def __call__(self, *args, input=None, timeout=60, env=None, endpoint=True):
        argv = [chcpctl_bin()]
        if endpoint and self.endpoint:
            argv += ["--endpoint", self.endpoint]
        argv += [str(a) for a in args]
        e = base_env(self.env)
        e.update(env or {})
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                           env=e, stdin=None if input is not None else subprocess.DEVNULL)
        assert_no_sanitizer_reports(r.stdout + r.stderr)
        return r

    def ok(self, *args, **kw):
        """Run and require exit 0 and an empty stderr."""
        r = self(*args, **kw)
        assert r.returncode == 0, "chcpctl %s: exit %d\n%s" % (args, r.returncode, r.stderr)
        assert r.stderr == "", r.stderr
        return r

    def fails(self, status, *args, **kw):
        """Run and require exit `status` and a one-line message on stderr."""
        r = self(*args, **kw)
        assert r.returncode == status, "chcpctl %s: exit %d, want %d\nstdout: %s\nstderr: %s" % (
            args, r.returncode, status, r.stdout, r.stderr)
        assert r.stderr.strip(), "no error message"
        return r


@pytest.fixture
def ctl():
    """chcpctl with no endpoint (for --help, --dry-run, errors before connecting)."""
    return Ctl()


def delete_all_vms(d):
    """Delete every VM of a running daemon: a daemon that stops leaves its
    VMMs running (by design), so a test that created VMs must not end
    without deleting them."""
    ctl = Ctl("unix://" + d.unix_socket)
    ids = ctl.ok("list", "-q").stdout.split()
    if ids:
        ctl.ok("delete", *ids)


@pytest.fixture
def daemon(vm_daemon):
    """A daemon that runs VMs on the stand-in, with a Unix socket and TCP;
    every VM is deleted at the end of the test."""
    yield vm_daemon
    delete_all_vms(vm_daemon)


@pytest.fixture(autouse=True, scope="session")
def no_leftover_vmms():
    """After the suite, no VMM of a daemon it started may still run."""
    yield
    assert_no_leftover_vmms()


@pytest.fixture(params=["unix", "tcp"])
def vmctl(request, daemon):
    """chcpctl against `daemon`, once over its Unix socket and once over TCP."""
    if request.param == "unix":
        c = Ctl("unix://" + daemon.unix_socket)
    else:
        c = Ctl("http://127.0.0.1:%d" % daemon.port)
    c.daemon = daemon
    return c


@pytest.fixture
def uctl(daemon):
    """chcpctl against `daemon` over its Unix socket (tests that need one transport)."""
    c = Ctl("unix://" + daemon.unix_socket)
    c.daemon = daemon
    return c


@pytest.fixture
def refused_port():
    """A loopback TCP port that refuses connections: bound but not listening,
    and held for the test, so nothing else can take it meanwhile."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()
