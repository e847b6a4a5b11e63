"""conftest.py - pytest fixtures for chcp-api's end-to-end tests.

`daemon` is a running chcp-api (binary from $CHCP_BIN, default
build/asan/chcp-api) on a free loopback port with a temporary state directory
and Unix socket; on teardown it gets SIGTERM and the test fails unless it
exits 0 with no sanitizer report in its output. `start_daemon(env=..., args=...)`
starts more, with custom configuration, under the same rules; a test that
ends a daemon some other way (second signal) sets `d.exit_checked = True`.
"""

import glob
import os
import subprocess

import pytest

from harness import Daemon, NODE_BIN, REPO, assert_no_leftover_vmms, chcp_bin, standin_bin


def pytest_configure(config):
    if not os.access(chcp_bin(), os.X_OK):
        raise pytest.UsageError(
            "chcp-api binary not found at %s: build it (make B=build/asan SAN=1 build) "
            "or set CHCP_BIN" % chcp_bin()
        )


@pytest.fixture(autouse=True, scope="session")
def no_leftover_vmms():
    """After the suite, no VMM of a daemon it started may still run."""
    yield
    assert_no_leftover_vmms()


@pytest.fixture
def start_daemon():
    started = []

    def start(env=None, args=None, unix_socket=True, vmm=False):
        d = Daemon(env=env, args=args, unix_socket=unix_socket, vmm=vmm)
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


@pytest.fixture
def daemon(start_daemon):
    return start_daemon(env={"CHCP_TEST_HOOKS": "1"})


@pytest.fixture
def vm_daemon(start_daemon):
    """A daemon that can run VMs: the CH stand-in and an image directory."""
    if not os.access(standin_bin(), os.X_OK):
        pytest.fail("CH stand-in missing at %s: make B=... SAN=1 standin-build "
                    "(make integration-test does), or set CHCP_STANDIN" % standin_bin())
    return start_daemon(vmm=True)


def node_tool(name):
    path = os.path.join(NODE_BIN, name)
    if not os.access(path, os.X_OK):
        pytest.fail("%s missing: run `npm ci` in tests/integration (make integration-test does)" % path)
    return path


@pytest.fixture(scope="session")
def buf():
    # The npm package's `buf` is a node shim that starts the platform's
    # native binary; calling that binary directly saves ~0.5 s per call.
    native = glob.glob(os.path.join(NODE_BIN, "..", "@bufbuild", "buf-linux-*", "bin", "buf"))
    if native and os.access(native[0], os.X_OK):
        return os.path.abspath(native[0])
    return node_tool("buf")


@pytest.fixture(scope="session")
def schema_image(buf, tmp_path_factory):
    """The API schema compiled once (buf build) for buf curl and connect-es."""
    out = str(tmp_path_factory.mktemp("schema") / "chcp.binpb")
    subprocess.run(
        [buf, "build", os.path.join(REPO, "proto"), "-o", out],
        check=True,
        cwd=REPO,
        timeout=120,
    )
    return out
