"""test_store_loss.py - a damaged or lost chcp.db never costs a running VM.

Issue 8, item 1: an empty, truncated-to-zero or missing chcp.db, or a table
whose rows were deleted, made the next start take every running VMM for an
orphan and (CHCP_ORPHAN_POLICY=reap, the default) kill it and delete its
directory and console log. Now every VM comes back from its vm.json with the
same VMM (pid and start time), state, labels and configuration, and nothing
is killed; a corrupt or newer database is refused with exit code 3, touching
nothing, and moving it aside recovers everything. VMMs with no record at all
(no row, no vm.json) are kept and shown as VMs of unknown configuration.
"""

import os
import sqlite3

import pytest

from storelib import state_daemon  # noqa: F401 (fixture)
from storelib import alive, identities

DAMAGES = ["missing", "truncated", "emptied", "rows_deleted", "table_dropped"]


def damage(d, how):
    for suffix in ("-wal", "-shm"):
        if how in ("missing", "truncated") and os.path.exists(d.db + suffix):
            os.unlink(d.db + suffix)
    if how == "missing":
        os.unlink(d.db)
    elif how == "truncated":
        os.truncate(d.db, 0)
    elif how == "emptied":
        os.unlink(d.db)
        sqlite3.connect(d.db).close()  # a fresh, valid, empty database
    else:
        db = sqlite3.connect(d.db)
        db.execute("DELETE FROM vms" if how == "rows_deleted" else "DROP TABLE vms")
        db.commit()
        db.close()


def populate(d):
    d.create("run", boot=True, labels={"team": "a"})
    d.create("paused", boot=True)
    d.call("PauseVm", {"vmId": "paused"})
    d.create("created", labels={"tier": "db"})
    return d.vms()


def assert_same(before, after):
    assert set(after) == set(before)
    for k, v in before.items():
        w = after[k]
        for field in ("state", "vmmPid", "labels", "config", "createdAt"):
            assert w.get(field) == v.get(field), (k, field, v, w)


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_store_keeps_every_vm(state_daemon, how):  # noqa: F811
    d = state_daemon().start()
    d.wait_recovered()
    before = populate(d)
    ids = identities(before)
    logs = {k: sorted(os.listdir(os.path.join(d.vms_dir, k))) for k in before}
    d.kill9()  # the worst moment: nothing flushed beyond what was acknowledged
    damage(d, how)

    d.start()
    rec = d.wait_recovered()["recovery"]
    for k, (pid, started) in ids.items():
        assert alive(pid, started), "VMM of %s (pid %d) was killed" % (k, pid)
    for k, files in logs.items():
        assert os.path.isdir(os.path.join(d.vms_dir, k)), "directory of %s removed" % k
        assert set(files) <= set(os.listdir(os.path.join(d.vms_dir, k))), k
    assert_same(before, d.vms())
    assert rec["rebuilt"] == 3, rec
    assert rec["crashed"] == 0 and rec["reaped"] == 0 and rec["orphans"] == 0, rec
    # Rebuilt rows are written back: the next start needs no vm.json.
    d.stop()
    d.start()
    rec = d.wait_recovered()["recovery"]
    assert rec["rebuilt"] == 0 and rec["adopted"] == 3, rec
    assert_same(before, d.vms())
    # And the VMs work.
    d.call("ResumeVm", {"vmId": "paused"})
    d.call("BootVm", {"vmId": "created"})
    for k in before:
        d.call("DeleteVm", {"vmId": k})
    for k, (pid, started) in ids.items():
        assert not alive(pid, started), "DeleteVm left the VMM of %s running" % k
    d.stop()


def test_corrupt_store_refused_then_recovered(state_daemon):  # noqa: F811
    d = state_daemon().start()
    d.wait_recovered()
    before = populate(d)
    ids = identities(before)
    d.stop()
    with open(d.db, "r+b") as f:  # a torn page in the middle of the file
        f.seek(4096)
        f.write(b"\xde\xad" * 2048)
    rc, err, log = d.refused()
    assert rc == 3, (rc, err)
    assert "refusing to start" in err and "database is corrupt" in err, err
    assert "move chcp.db" in err and "no VM was touched" in err, err
    for k, (pid, started) in ids.items():
        assert alive(pid, started), k
    # What the message says to do.
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(d.db + suffix):
            os.rename(d.db + suffix, d.db + suffix + ".corrupt")
    d.start()
    assert d.wait_recovered()["recovery"]["rebuilt"] == 3
    assert_same(before, d.vms())
    d.stop()


def test_newer_schema_refused(state_daemon):  # noqa: F811
    d = state_daemon().start()
    d.wait_recovered()
    d.create("keep", boot=True)
    ids = identities(d.vms())
    d.stop()
    db = sqlite3.connect(d.db)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    rc, err, _ = d.refused()
    assert rc == 3 and "schema version 99 is newer" in err, (rc, err)
    assert all(alive(p, s) for p, s in ids.values())


def test_no_record_at_all_keeps_the_vmm(state_daemon):  # noqa: F811
    """Store and vm.json both gone (as after losing the store of a chcp-api
    older than vm.json): the VMM is adopted as a VM of unknown configuration
    - visible, deletable - instead of being killed as an orphan."""
    d = state_daemon().start()
    d.wait_recovered()
    d.create("bare", boot=True)
    ids = identities(d.vms())
    d.stop()
    os.unlink(d.db)
    os.unlink(os.path.join(d.vms_dir, "bare", "vm.json"))
    d.start()
    rec = d.wait_recovered()["recovery"]
    assert rec["unaccounted"] == 1 and rec["reaped"] == 0, rec
    v = d.vms()["bare"]
    pid, started = ids["bare"]
    assert v["vmmPid"] == pid and alive(pid, started)
    assert v["state"] == "VM_STATE_RUNNING"
    assert "configuration unknown" in v["stateReason"]
    d.call("DeleteVm", {"vmId": "bare"})
    assert not alive(pid, started)
    assert not os.path.exists(os.path.join(d.vms_dir, "bare"))
    d.stop()
