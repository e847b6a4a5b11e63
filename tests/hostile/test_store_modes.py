"""test_store_modes.py - the store's files are private (issue 8: chcp.db-wal
and -shm were 0644): chcp.db, -wal, -shm, chcp.lock and every vm.json are
0600 from their creation under a permissive umask, and an older
installation's 0644 files are made 0600 at the next start."""

import os
import stat

from storelib import state_daemon  # noqa: F401 (fixture)



def modes(d):
    out = {}
    for name in ("chcp.db", "chcp.db-wal", "chcp.db-shm", "chcp.lock"):
        out[name] = stat.S_IMODE(os.stat(os.path.join(d.state_dir, name)).st_mode)
    for vm in os.listdir(d.vms_dir):
        out[vm + "/vm.json"] = stat.S_IMODE(os.stat(os.path.join(d.vms_dir, vm, "vm.json")).st_mode)
    return out


def test_store_files_are_private(state_daemon):  # noqa: F811
    old = os.umask(0o022)
    try:
        d = state_daemon().start()
    finally:
        os.umask(old)
    d.wait_recovered()
    for i in range(3):
        d.create("m%d" % i, boot=i == 0)
    m = modes(d)
    assert set(m.values()) == {0o600}, m
    assert len(m) == 7, m
    d.stop()

    # As an older chcp-api left them.
    for name in ("chcp.db", "chcp.lock"):
        os.chmod(os.path.join(d.state_dir, name), 0o644)
    d.start()
    d.wait_recovered()
    d.create("later")
    assert set(modes(d).values()) == {0o600}, modes(d)
    assert any("readable by others: now mode 0600" in r.get("msg", "") for r in d.log_records())
    d.stop()
