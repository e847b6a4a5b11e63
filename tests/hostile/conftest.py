"""conftest.py - fixtures of the hostile-client suite (tests/hostile/).

Kept small and general on purpose: the suite reuses tests/integration/harness.py
to run chcp-api, and every test file brings its own hostile clients.

  start_daemon(env=None, args=None, unix_socket=True, vmm=False, release=False)
      starts a chcp-api (harness.Daemon) on a free loopback port with a temporary
      state directory and Unix socket and returns it once /health answers. On
      teardown it gets SIGTERM and the test fails unless it exits 0 with no
      sanitizer report. `vmm=True` gives it the Cloud Hypervisor stand-in and an
      image directory; `release=True` runs the unsanitized build (for tests that
      measure memory: ASan's shadow and quarantine would swamp the figures).
      A test that ends a daemon itself sets `d.exit_checked = True`.

The soft RLIMIT_NOFILE of the test process (and so of the daemons it starts)
is raised to its hard limit at start: some tests hold over a thousand sockets.
"""

import os
import resource
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from harness import Daemon, assert_no_leftover_vmms, chcp_bin, standin_bin  # noqa: E402

# Sockets some tests hold at once, plus room for the daemon's own files.
WANT_FDS = 8192


def release_bin():
    return os.environ.get("CHCP_RELEASE_BIN") or chcp_bin()


def pytest_configure(config):
    for path in {chcp_bin(), release_bin()}:
        if not os.access(path, os.X_OK):
            raise pytest.UsageError(
                "chcp-api not found at %s: run `make hostile-test` (it builds what the suite "
                "needs) or set CHCP_BIN / CHCP_RELEASE_BIN" % path
            )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WANT_FDS if hard == resource.RLIM_INFINITY else min(hard, WANT_FDS)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@pytest.fixture(autouse=True, scope="session")
def no_leftover_vmms():
    """After the suite, no VMM of a daemon it started may still run."""
    yield
    assert_no_leftover_vmms()


@pytest.fixture
def start_daemon():
    started = []

    def start(env=None, args=None, unix_socket=True, vmm=False, release=False):
        if vmm and not os.access(standin_bin(), os.X_OK):
            pytest.fail("CH stand-in missing at %s: make hostile-test builds it, or set CHCP_STANDIN"
                        % standin_bin())
        d = Daemon(env=env, args=args, unix_socket=unix_socket, vmm=vmm,
                   binary=release_bin() if release else None)
        started.append(d)
        return d.start()

    yield start
    try:
        for d in started:
            if not getattr(d, "exit_checked", False):
                d.stop()
    finally:
        for d in started:
            d.cleanup()
