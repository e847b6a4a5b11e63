"""conftest.py - fixtures of the o11y suite: real Jaeger, real Prometheus, a
failing OTLP receiver, and chcp-api daemons configured to talk to them.

- `jaeger`: one Jaeger all-in-one for the session (memory storage, loopback,
  free ports). Tests never share data: each daemon has its own service.name.
- `receiver`: a fresh failing OTLP receiver (receiver.py) per test.
- `start_chcp(otel=..., env=...)`: starts a daemon; every daemon is stopped at
  teardown and must exit 0 with no sanitizer report.
- `start_prometheus(targets)`: a Prometheus scraping the given targets every
  second (or running `config_text`), stopped at teardown.
- `schema_image`: the API schema built once with `buf build` for buf curl.
"""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from chcp import Chcp, buf_bin  # noqa: E402
from peers import REPO, Jaeger, Prometheus  # noqa: E402
from receiver import Receiver  # noqa: E402


@pytest.fixture(scope="session")
def jaeger():
    j = Jaeger()
    try:
        j.start()
        yield j
    finally:
        j.stop()


@pytest.fixture
def receiver():
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def start_chcp():
    started = []

    def start(otel=None, env=None, prometheus=True):
        c = Chcp(otel=otel, env=env, prometheus=prometheus)
        started.append(c)
        return c.start()

    yield start
    try:
        for c in started:
            # Shown by pytest only when the test fails: the daemon's last words.
            print("---- chcp-api log (%s), last lines:\n%s" % (c.service_name, "\n".join(
                c.output().splitlines()[-40:])))
            c.stop()
    finally:
        for c in started:
            c.cleanup()


@pytest.fixture
def start_prometheus():
    started = []

    def start(targets, interval="1s", config_text=None):
        p = Prometheus(targets, interval, config_text=config_text)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def schema_image(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("schema") / "chcp.binpb")
    subprocess.run([buf_bin(), "build", os.path.join(REPO, "proto"), "-o", out], check=True, cwd=REPO,
                   timeout=120)
    return out
