"""pytest setup for the Firecracker stand-in tests: import path, skip without a
binary, and a guard that fails any test leaving a child process behind."""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fcclient import BIN  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if BIN and os.access(BIN, os.X_OK):
        return
    skip = pytest.mark.skip(reason="FC_STANDIN not set (run: make fc-standin-test)")
    for item in items:
        item.add_marker(skip)


def _children():
    me = str(os.getpid())
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid
            out.append((pid, fields[0]))
    return out


@pytest.fixture(autouse=True)
def no_leftover_processes():
    yield
    left = _children()
    for pid, _ in left:  # fail this test, but do not let it poison the next ones
        try:
            os.kill(int(pid), signal.SIGKILL)
            os.waitpid(int(pid), 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert not left, f"test left child processes behind: {left}"
