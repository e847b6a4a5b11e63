"""scripts/o11y.sh (`make o11y`): every port it opens is configurable, all on
127.0.0.1, and Prometheus scrapes the chcp ports it is told to. Started with
every port moved off its default onto a free one; nothing may listen on a
default port or outside loopback; `stop` ends both processes."""

import os
import subprocess

from peers import REPO, TOOLS_BIN, free_port, http_get, listening_sockets, wait_until

PORT_VARS = ("JAEGER_OTLP_PORT", "JAEGER_OTLP_GRPC_PORT", "JAEGER_UI_PORT", "JAEGER_QUERY_GRPC_PORT",
             "JAEGER_COLLECTOR_GRPC_PORT", "JAEGER_COLLECTOR_HTTP_PORT", "JAEGER_ADMIN_PORT", "PROMETHEUS_PORT")
CHCP_PORT_VARS = ("CHCP_PROMETHEUS_PORT", "CHCP_API_PORT")


def script(env, *args):
    return subprocess.run(["bash", os.path.join(REPO, "scripts", "o11y.sh")] + list(args), env=env,
                          capture_output=True, text=True, timeout=120)


def test_every_port_is_configurable(tmp_path):
    ports = {v: free_port() for v in PORT_VARS + CHCP_PORT_VARS}
    assert len(set(ports.values())) == len(ports)
    env = dict(os.environ, O11Y_DIR=str(tmp_path / "run"), **{k: str(v) for k, v in ports.items()})
    env.setdefault("JAEGER_BIN", os.path.join(TOOLS_BIN, "jaeger-all-in-one"))
    r = script(env, "start")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "http://127.0.0.1:%d" % ports["JAEGER_OTLP_PORT"] in r.stdout, r.stdout
        pids = {name: int((tmp_path / "run" / (name + ".pid")).read_text()) for name in ("jaeger", "prometheus")}
        # Jaeger's listeners come up one by one after its admin port answers.
        jaeger_ports = {ports[v] for v in PORT_VARS if v.startswith("JAEGER_")}
        wait_until(lambda: jaeger_ports <= {p for _, p in listening_sockets(pids["jaeger"])}, 30, "Jaeger's ports")
        opened = listening_sockets(pids["jaeger"]) | listening_sockets(pids["prometheus"])
        assert {p for _, p in opened} == set(ports[v] for v in PORT_VARS), opened
        assert {a for a, _ in opened} == {"127.0.0.1"}, opened
        # Prometheus scrapes the chcp ports it was given (nothing listens there: down is fine).
        def targets():
            st, body = http_get("http://127.0.0.1:%d/api/v1/targets" % ports["PROMETHEUS_PORT"])
            text = body.decode() if st == 200 else ""
            return text if '"scrapeUrl"' in text else None
        text = wait_until(targets, 20, "Prometheus' targets")
        for v in CHCP_PORT_VARS:
            assert "127.0.0.1:%d" % ports[v] in text, (v, text[:2000])
    finally:
        stop = script(env, "stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    for pid in pids.values():
        wait_until(lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid), 10, "pid %d to end" % pid)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
