"""test_store_statedir.py - the state directory deleted under a running
daemon (issue 8: it went unnoticed, /health said 200, and after a restart the
VMMs were left unowned).

Within a few seconds /health and /_/health answer 503 with the reason, the
daemon logs it at error level and writes everything it holds back (the
directory, chcp.db, each vm.json). After a restart every VMM is owned again -
found by its deleted paths, adopted without its API socket (gone with the
directory), and stopped by DeleteVm. A deleted chcp.db alone is repaired
completely: health returns to 200 and a restart finds every row.
"""

import os
import shutil

from harness import wait_for
from storelib import state_daemon  # noqa: F401 (fixture)
from storelib import alive, identities


def unhealthy(d):
    status, _, body = d.http("GET", "/health")
    return status == 503 and b"unhealthy" in body


def test_state_dir_deleted(state_daemon):  # noqa: F811
    d = state_daemon().start()
    d.wait_recovered()
    d.create("a", boot=True)
    d.create("b")
    before = d.vms()
    ids = identities(before)
    assert d.http("GET", "/health")[0] == 200

    shutil.rmtree(d.state_dir)
    assert wait_for(lambda: unhealthy(d), 10), "deletion not noticed"
    status, _, body = d.http("GET", "/health")
    assert b"was deleted" in body, body
    st, h = d.health()
    assert st == 503 and h["status"] == "unhealthy", h
    assert "was deleted" in h["state_dir"]["problem"], h["state_dir"]
    assert "lost their API socket" in h["state_dir"]["problem"], h["state_dir"]
    assert any(r["level"] == "error" and "STATE DIRECTORY PROBLEM" in r["msg"]
               for r in d.log_records())
    # Written back from memory.
    assert wait_for(lambda: all(os.path.exists(os.path.join(d.vms_dir, k, "vm.json"))
                                for k in before), 5)
    assert os.path.exists(d.db)
    for k, (pid, started) in ids.items():
        assert alive(pid, started), k
    d.stop()

    d.start()
    rec = d.wait_recovered()["recovery"]
    assert rec["adopted"] == 2 and rec["crashed"] == 0, rec
    after = d.vms()
    assert set(after) == set(before)
    for k, v in after.items():
        assert v["vmmPid"] == before[k]["vmmPid"], (k, v)
        assert v["state"] == before[k]["state"], (k, v)
        assert "directory was deleted" in v["stateReason"], (k, v)
    assert d.http("GET", "/health")[0] == 200
    # Owned: DeleteVm stops them (by signal: their API socket is gone).
    for k in before:
        d.call("DeleteVm", {"vmId": k})
    for k, (pid, started) in ids.items():
        assert wait_for(lambda: not alive(pid, started), 10), "VMM of %s still runs" % k
    assert d.vms() == {}
    d.stop()


def test_db_deleted_is_repaired(state_daemon):  # noqa: F811
    d = state_daemon().start()
    d.wait_recovered()
    d.create("c", boot=True)
    ids = identities(d.vms())
    for suffix in ("", "-wal", "-shm"):
        os.unlink(d.db + suffix)
    assert wait_for(lambda: d.health()[1]["state_dir"]["detections"] == 1, 10)
    st, h = d.health()
    assert st == 200 and h["state_dir"]["healthy"], h  # repaired: nothing was lost
    assert "chcp.db was deleted" in h["state_dir"]["problem"]
    assert os.path.exists(d.db)
    d.create("after")  # the new database takes writes
    d.kill9()
    d.start()
    rec = d.wait_recovered()["recovery"]
    assert rec["rebuilt"] == 0 and rec["adopted"] == 2, rec
    pid, started = ids["c"]
    assert d.vms()["c"]["vmmPid"] == pid and alive(pid, started)
    d.stop()
