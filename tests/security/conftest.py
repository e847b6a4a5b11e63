"""conftest.py - fixtures of the security suite (tests/security/).

  pki                      one throw-away PKI per session (seclib.Pki)
  start_daemon(...)        a harness.Daemon (clear text), started; stopped at
                           teardown with SIGTERM, exit 0 and no sanitizer
                           report required (set d.exit_checked to skip)
  start_tls(...)           the same with TLS (seclib.TlsDaemon)

Everything listens on loopback with ephemeral ports.
"""

import glob
import importlib.util
import os
import re
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Daemon, chcp_bin  # noqa: E402
from seclib import Pki, TlsDaemon  # noqa: E402

# buf (connect-go's and grpc-go's client, as `buf curl`) and the compiled
# schema, as the integration suite provides them.
_spec = importlib.util.spec_from_file_location(
    "integration_conftest", os.path.join(HERE, "..", "integration", "conftest.py"))
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)
buf = _integration.buf
schema_image = _integration.schema_image


def pytest_configure(config):
    if not os.access(chcp_bin(), os.X_OK):
        raise pytest.UsageError("chcp-api not found at %s: run `make security-test`" % chcp_bin())


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def kill_vmms(state_dir):
    """VMMs outlive their daemon by design: kill those of this test's state
    directory (their command line names a file in it), then remove the
    cgroups confinement made for them (chcp-vms/<state dir, escaped>/)."""
    needle = (state_dir.rstrip("/") + "/").encode()
    killed = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if needle in f.read():
                    os.kill(int(pid), 9)
                    killed.append(int(pid))
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while killed and time.monotonic() < deadline:
        killed = [p for p in killed if os.path.exists("/proc/%d" % p)]
        time.sleep(0.05)
    level = "".join("-" if c == "/" else c if c.isalnum() or c in "._" else "_"
                    for c in state_dir.strip("/"))
    for parent in (glob.glob("/sys/fs/cgroup/chcp-vms/" + level) +
                   glob.glob("/sys/fs/cgroup/*/chcp-vms/" + level)):
        for child in glob.glob(parent + "/*/"):
            try:
                os.rmdir(child)
            except OSError:
                pass
        try:
            os.rmdir(parent)
        except OSError:
            pass


@pytest.fixture
def daemons():
    started = []
    yield started
    try:
        for d in started:
            if not getattr(d, "exit_checked", False):
                d.stop()
    finally:
        for d in started:
            d.cleanup()
            kill_vmms(d.state_dir)


@pytest.fixture
def start_daemon(daemons):
    def start(**kw):
        d = Daemon(**kw)
        daemons.append(d)
        return d.start()
    return start


@pytest.fixture
def start_tls(daemons, pki):
    def start(**kw):
        d = TlsDaemon(pki, **kw)
        daemons.append(d)
        return d.start()
    return start
