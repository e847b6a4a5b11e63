"""Stand-in tests: the VM state machine, boot-time validation, vm.info and devices.

Expected codes follow vmm-apis.md ("Action by state as seen over HTTP").
"""

import os

import pytest

from chclient import StandIn, booted, chain, minimal_config, names


# ---- state machine ------------------------------------------------------------------------------

STATES = ["none", "created", "running", "paused"]
# call -> expected status per state (vmm-apis.md "Action by state as seen over HTTP")
TABLE = {
    "vm.create": [204, 500, 500, 500],
    "vm.boot": [404, 204, 500, 500],
    "vm.pause": [500, 500, 204, 500],
    "vm.resume": [500, 500, 500, 204],
    "vm.shutdown": [500, 500, 204, 204],
    "vm.reboot": [404, 404, 204, 204],
    "vm.power-button": [500, 500, 204, 204],
    "vm.delete": [204, 204, 204, 204],
    "vm.info": [404, 200, 200, 200],
    "vm.counters": [500, 500, 200, 200],
    "vm.nmi": [500, 500, 204, 204],
}


def enter_state(si, tmp_path, state):
    if state == "none":
        return
    assert si.put("vm.create", minimal_config(tmp_path)).status == 204
    if state in ("running", "paused"):
        assert si.put("vm.boot").status == 204
    if state == "paused":
        assert si.put("vm.pause").status == 204


@pytest.mark.parametrize("call", list(TABLE))
@pytest.mark.parametrize("state_idx", range(4), ids=STATES)
def test_action_by_state(tmp_path, call, state_idx):
    with StandIn(tmp_path, no_shutdown=True) as si:
        enter_state(si, tmp_path, STATES[state_idx])
        method = "GET" if call in ("vm.info", "vm.counters") else "PUT"
        body = minimal_config(tmp_path) if call == "vm.create" else None
        r = si.call(method, call, body)
        assert r.status == TABLE[call][state_idx], (call, STATES[state_idx], r)
        if r.status >= 400:
            c = chain(r)
            assert c[0] == "Error from API" and len(c) >= 3
        elif r.status == 204:
            assert r.body == b"" and "content-length" not in r.headers


def test_error_chains(tmp_path):
    with StandIn(tmp_path, no_shutdown=True) as si:
        assert chain(si.get("vm.info")) == ["Error from API", "The VM info is not available",
                                            "VM is not created"]
        assert chain(si.put("vm.boot")) == ["Error from API", "The VM could not boot",
                                            "VM config is missing"]
        assert chain(si.put("vm.pause")) == ["Error from API", "The VM could not be paused",
                                             "VM is not running"]
        assert chain(si.put("vm.reboot")) == ["Error from API", "The VM could not reboot",
                                              "VM is not created"]
        booted(si, tmp_path)
        assert chain(si.put("vm.boot")) == ["Error from API", "The VM could not boot",
                                            "VM is already created"]
        assert chain(si.put("vm.create", minimal_config(tmp_path)))[2] == "VM is already created"
        r = si.put("vm.resume")
        assert chain(r)[-1] == "Invalid transition: InvalidStateTransition(Running, Running)"
        assert si.put("vm.pause").status == 204
        r = si.put("vm.pause")
        assert chain(r) == ["Error from API", "The VM could not be paused", "Cannot pause VM",
                            "Failed to pause migratable component",
                            "Invalid transition: InvalidStateTransition(Paused, Paused)"]
        r = si.put("vm.boot")  # boot on a paused VM is refused, use resume
        assert r.status == 500


def test_info_shape_and_defaults(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = {"payload": {"kernel": minimal_config(tmp_path)["payload"]["kernel"]},
               "disks": [{"path": str(tmp_path / "d.img")}], "net": [{"tap": "t0"}],
               "typo_field": 1}
        (tmp_path / "d.img").write_bytes(b"\0" * 4096)
        assert si.put("vm.create", cfg).status == 204
        info = si.get("vm.info").json()
        assert set(info) == {"config", "state", "memory_actual_size"}
        assert info["state"] == "Created"
        c = info["config"]
        assert "typo_field" not in c
        assert c["cpus"]["boot_vcpus"] == 1 and c["cpus"]["max_vcpus"] == 1
        assert c["memory"]["size"] == 512 << 20 and info["memory_actual_size"] == 512 << 20
        assert c["rng"]["src"] == "/dev/urandom"
        assert c["serial"] == {"mode": "Null"}
        assert c["console"]["mode"] == "Tty"
        assert c["disks"][0]["num_queues"] == 1 and c["disks"][0]["queue_size"] == 128
        assert c["net"][0]["num_queues"] == 2 and c["net"][0]["offload_tso"] is True
        assert "id" not in c["disks"][0]
        assert si.put("vm.boot").status == 204
        info = si.get("vm.info").json()
        assert info["state"] == "Running"
        assert info["config"]["disks"][0]["id"] == "_disk0"
        assert info["config"]["net"][0]["id"] == "_net1"
        assert "_disk0" in info["device_tree"]
        assert si.put("vm.pause").status == 204
        assert si.get("vm.info").json()["state"] == "Paused"


def test_platform_aliases_and_defaults(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path, platform={"serial_number": "SN1",
                                                 "uuid": "6f1c8a1e-0000-4000-8000-000000000001"})
        assert si.put("vm.create", cfg).status == 204
        p = si.get("vm.info").json()["config"]["platform"]
        assert p == {"num_pci_segments": 1, "iommu_address_width_bits": 64,
                     "system_serial_number": "SN1",
                     "system_uuid": "6f1c8a1e-0000-4000-8000-000000000001",
                     "iommufd": False, "vfio_p2p_dma": True}


def test_shutdown_keeps_config_and_reboots_in_place(tmp_path):
    with StandIn(tmp_path) as si:
        booted(si, tmp_path)
        assert si.put("vm.shutdown").status == 204
        info = si.get("vm.info").json()
        assert info["state"] == "Created" and "device_tree" not in info
        assert si.put("vm.boot").status == 204
        assert si.put("vm.reboot").status == 204
        assert si.get("vm.info").json()["state"] == "Running"
        assert si.put("vm.pause").status == 204
        assert si.put("vm.reboot").status == 204  # reboot from paused ends running
        assert si.get("vm.info").json()["state"] == "Running"
        assert si.get("vmm.ping").json()["pid"] == si.proc.pid
        ev = names(si.events())
        assert ev.count("vm/rebooting") == 2 and ev.count("vm/rebooted") == 2


def test_delete_is_idempotent(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.delete").status == 204
        booted(si, tmp_path)
        assert si.put("vm.delete").status == 204
        assert si.put("vm.delete").status == 204
        assert si.get("vm.info").status == 404
        assert si.put("vm.create", minimal_config(tmp_path)).status == 204
        ev = names(si.events())
        assert ev.count("vm/deleted") == 1
        i = ev.index("vm/deleted")
        assert ev[i - 1] == "vm/shutdown"


# ---- boot-time validation -------------------------------------------------------------------


@pytest.mark.parametrize("mutate,status,last", [
    (lambda c: c.pop("payload"), 400, "No bootitem provided: neither firmware nor kernel"),
    (lambda c: c["payload"].update(firmware=c["payload"]["kernel"]), 400,
     "Specifying a kernel is not supported when a firmware is provided"),
    (lambda c: c.update(cpus={"boot_vcpus": 4, "max_vcpus": 2}), 400,
     "Max CPUs (2) lower than boot CPUs (4)"),
    (lambda c: c.update(console={"mode": "File"}), 400,
     "Path missing when using file console mode"),
    (lambda c: c.update(disks=[{"path": "/x", "id": "a"}, {"path": "/y", "id": "a"}]), 409,
     "Identifier a is not unique"),
    (lambda c: c.update(disks=[{"path": "/x", "id": "__a"}]), 400, "Identifier __a is not valid"),
    (lambda c: c.update(memory={"size": 0}), 500, "No memory zones found"),
    (lambda c: c.update(memory={"size": 4097}), 500, "Memory configuration is not valid"),
    (lambda c: c.update(disks=[{"path": "/nonexistent/disk.img"}]), 500,
     "No such file or directory (os error 2)"),
    (lambda c: c["payload"].update(initramfs="/nonexistent/initrd"), 500,
     "No such file or directory (os error 2)"),
])
def test_boot_validation(tmp_path, mutate, status, last):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path)
        mutate(cfg)
        assert si.put("vm.create", cfg).status == 204  # create never validates
        r = si.put("vm.boot")
        assert r.status == status, r
        c = chain(r)
        assert c[:2] == ["Error from API", "The VM could not boot"] and c[-1] == last
        # Vm::new failed: no Vm kept, the config can be fixed by re-creating
        assert si.get("vm.info").json()["state"] == "Created"
        assert "vm/booted" not in names(si.events())
        assert si.put("vm.delete").status == 204
        assert si.put("vm.create", minimal_config(tmp_path)).status == 204
        assert si.put("vm.boot").status == 204


@pytest.mark.parametrize("extra,last", [
    ({"net": [{"num_queues": 1}]}, "Number of queues (1) to virtio_net should be higher than 2"),
    ({"net": [{"num_queues": 4}]}, "Queue count (4) must not exceed boot vCPUs (1)"),
    ({"net": [{"queue_size": 100}]},
     "Queue size must be a power of 2 no greater than 32768: 100"),
    ({"net": [{"mtu": 1000}]},
     "Provided MTU 1000 is lower than 1280 (expected by VIRTIO specification)"),
    ({"net": [{"offload_csum": False}]},
     '"offload_tso" and "offload_ufo" depend on "offload_csum"'),
    ({"net": [{"ip": "10.0.0.1"}]}, "IP provided without a mask"),
    ({"net": [{"vhost_user": True, "vhost_socket": "/x"}]},
     "Using vhost-user requires using shared memory or huge pages"),
    ({"disks": [{"path": "/x", "num_queues": 2}]},
     "Queue count (2) must not exceed boot vCPUs (1)"),
    ({"disks": [{"path": "/x", "serial": "s" * 21}]},
     "Block device serial length (21) exceeds maximum allowed length (20)"),
    ({"disks": [{"path": "/x", "pci_segment": 1}]}, "Invalid PCI segment id: 1"),
    ({"vsock": {"cid": 2, "socket": "/v"}}, "2 is a special VSOCK CID"),
    ({"fs": [{"tag": "t", "socket": "/s"}]},
     "Using vhost-user requires using shared memory or huge pages"),
])
def test_device_validation_rules(tmp_path, extra, last):
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(tmp_path, **extra)).status == 204
        r = si.put("vm.boot")
        assert r.status == 400, r
        assert chain(r)[2] == "Failed to validate config" and chain(r)[-1] == last


def test_missing_kernel_keeps_a_vm(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path)
        cfg["payload"]["kernel"] = str(tmp_path / "missing")
        assert si.put("vm.create", cfg).status == 204
        r = si.put("vm.boot")
        assert r.status == 500 and chain(r)[2] == "Cannot open kernel file"
        r = si.put("vm.boot")  # the Vm object survived: CH says it is already created
        assert r.status == 500 and chain(r)[2] == "VM is already created"
        assert si.get("vm.info").json()["state"] == "Created"
        assert si.put("vm.delete").status == 204


def test_missing_disk_drops_all_disks_from_the_config(tmp_path):
    """CH's make_virtio_block_devices() takes the list out of the config and
    returns early on error: the stored config has no disks any more."""
    with StandIn(tmp_path) as si:
        good = tmp_path / "good.img"
        good.write_bytes(b"\0" * 512)
        cfg = minimal_config(tmp_path, disks=[{"path": str(good)},
                                              {"path": str(tmp_path / "missing.img")}])
        assert si.put("vm.create", cfg).status == 204
        r = si.put("vm.boot")
        assert r.status == 500
        assert chain(r)[2:4] == ["Error from device manager", "Cannot open disk path"]
        assert "disks" not in si.get("vm.info").json()["config"]
        assert si.put("vm.boot").status == 204  # ... and boots without them


def test_ids_assigned_before_a_late_failure(tmp_path):
    with StandIn(tmp_path) as si:
        img = tmp_path / "a.img"
        img.write_bytes(b"\0" * 512)
        cfg = minimal_config(tmp_path, disks=[{"path": str(img)}], net=[{"id": "mynet"}, {}],
                             vsock={"cid": 3, "socket": str(tmp_path / "v.sock")})
        cfg["payload"]["kernel"] = str(tmp_path / "missing-kernel")
        assert si.put("vm.create", cfg).status == 204
        assert si.put("vm.boot").status == 500
        c = si.get("vm.info").json()["config"]
        assert [d["id"] for d in c["disks"]] == ["_disk0"]
        assert [n["id"] for n in c["net"]] == ["mynet", "_net1"]
        assert c["vsock"]["id"] == "_vsock2"


def test_firmware_drops_cmdline(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path)
        cfg["payload"] = {"firmware": cfg["payload"]["kernel"], "cmdline": "x"}
        assert si.put("vm.create", cfg).status == 204
        assert si.get("vm.info").json()["config"]["payload"]["cmdline"] == "x"
        assert si.put("vm.boot").status == 204
        assert "cmdline" not in si.get("vm.info").json()["config"]["payload"]


def test_disk_locks_between_instances(tmp_path):
    disk = tmp_path / "shared.img"
    disk.write_bytes(b"\0" * 4096)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with StandIn(tmp_path / "a") as a, StandIn(tmp_path / "b") as b:
        booted(a, tmp_path, disks=[{"path": str(disk)}])
        assert b.put("vm.create", minimal_config(tmp_path, disks=[{"path": str(disk)}])).status \
            == 204
        r = b.put("vm.boot")
        assert r.status == 500 and "lock" in chain(r)[2]
        assert a.put("vm.shutdown").status == 204
        assert b.put("vm.delete").status == 204
        assert b.put("vm.create", minimal_config(tmp_path, disks=[{"path": str(disk)}])).status \
            == 204
        assert b.put("vm.boot").status == 204


def test_console_file_created_at_create(tmp_path):
    with StandIn(tmp_path) as si:
        log = tmp_path / "console.log"
        log.write_text("old")
        cfg = minimal_config(tmp_path, console={"mode": "File", "file": str(log)})
        assert si.put("vm.create", cfg).status == 204
        assert log.read_text() == ""
        bad = minimal_config(tmp_path, serial={"mode": "File", "file": "/nonexistent/x"})
        assert si.put("vm.delete").status == 204
        r = si.put("vm.create", bad)
        assert r.status == 500 and chain(r)[2] == "Error creating console devices"
        assert si.get("vm.info").status == 200  # CH stored the config before failing


# ---- devices -----------------------------------------------------------------------------


def held_pipes(pid, *fds):
    """How many fds of process pid point at the pipes behind our fds."""
    want = {f"pipe:[{os.fstat(fd).st_ino}]" for fd in fds}
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in want:
                n += 1
        except FileNotFoundError:
            pass
    return n


def test_add_net_with_fds_cold_and_hot(tmp_path):
    with StandIn(tmp_path) as si:
        cfg = minimal_config(tmp_path, cpus={"boot_vcpus": 2, "max_vcpus": 2})
        assert si.put("vm.create", cfg).status == 204
        r1, w1 = os.pipe()
        c = si.conn()
        # one TAP fd per queue pair: 2 fds need num_queues 4 (NetConfig::validate)
        r = c.request("PUT", "vm.add-net", {"mac": "12:34:56:78:90:ab"}, fds=[r1, w1])
        assert r.status == 400
        assert chain(r)[-1] == ("Number of queues (2) to virtio_net does not match the number "
                                "of FDs (4)")
        assert held_pipes(si.proc.pid, r1) == 0  # refused: the fds were closed
        r = c.request("PUT", "vm.add-net", {"mac": "12:34:56:78:90:ab", "fds": [99],
                                            "num_queues": 4}, fds=[r1, w1])
        assert r.status == 204  # cold plug
        net = si.get("vm.info").json()["config"]["net"][0]
        assert len(net["fds"]) == 2 and 99 not in net["fds"]
        assert held_pipes(si.proc.pid, r1) == 2  # both ends of the pipe are held
        assert si.put("vm.boot").status == 204
        r2, w2 = os.pipe()
        r = c.request("PUT", "vm.add-net", {"id": "hot0"}, fds=[r2])
        assert r.status == 200 and r.json()["id"] == "hot0"
        assert r.json()["bdf"].startswith("0000:00:")
        assert held_pipes(si.proc.pid, r2) == 1
        r = c.request("PUT", "vm.add-net", {"id": "hot0"}, fds=[w2])
        assert r.status == 409 and chain(r)[-1] == "Identifier hot0 is not unique"
        assert held_pipes(si.proc.pid, r2) == 1  # the refused request's fd was closed
        assert si.put("vm.remove-device", {"id": "hot0"}).status == 204
        assert held_pipes(si.proc.pid, r2) == 0
        r = c.request("GET", "vm.info", fds=[r2])  # fds on other calls are dropped
        assert r.status == 200 and held_pipes(si.proc.pid, r2) == 0
        assert si.put("vm.delete").status == 204
        assert held_pipes(si.proc.pid, r1) == 0
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_add_disk_and_remove_device(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.add-disk", {"path": "/x"}).status == 404
        assert si.put("vm.create", minimal_config(tmp_path)).status == 204
        assert si.put("vm.add-disk", {"path": "/nonexistent"}).status == 204  # cold: no check
        r = si.put("vm.remove-device", {"id": "nope"})
        assert r.status == 404 and chain(r)[-1] == 'No device with id "nope" to remove'
        si.put("vm.delete")
        img = tmp_path / "hot.img"
        img.write_bytes(b"\0" * 512)
        booted(si, tmp_path)
        r = si.put("vm.add-disk", {"path": str(img)})
        assert r.status == 200 and r.json()["id"].startswith("_disk")
        r = si.put("vm.add-disk", {"path": "/nonexistent"})
        assert r.status == 500
        r = si.put("vm.remove-device", {"id": "nope"})
        assert r.status == 404 and "Failed to find device" in chain(r)[-1]
        did = si.get("vm.info").json()["config"]["disks"][0]["id"]
        assert si.put("vm.remove-device", {"id": did}).status == 204
        assert "disks" not in si.get("vm.info").json()["config"] or \
            si.get("vm.info").json()["config"]["disks"] == []
        assert si.put("vm.remove-device", {}).status == 400


def test_pci_slots_run_out(tmp_path):
    """31 usable slots per PCI segment: console Off + rng + 30 disks fill it."""
    img = tmp_path / "d.img"
    img.write_bytes(b"\0" * 512)
    disks = [{"path": str(img), "readonly": True} for _ in range(30)]
    with StandIn(tmp_path) as si:
        assert si.put("vm.create", minimal_config(tmp_path, disks=disks)).status == 204
        assert si.put("vm.boot").status == 204
        tree = si.get("vm.info").json()["device_tree"]
        assert tree["_virtio-pci-_disk29"]["pci_bdf"] == "0000:00:1e.0"
        r = si.put("vm.add-disk", {"path": str(img), "readonly": True})
        assert r.status == 500 and chain(r)[-1] == ("Could not find an available device slot "
                                                    "on the PCI bus")
        assert si.put("vm.delete").status == 204
        cfg = minimal_config(tmp_path, disks=disks + [{"path": str(img), "readonly": True}])
        assert si.put("vm.create", cfg).status == 204
        r = si.put("vm.boot")
        assert r.status == 500 and chain(r)[2:4] == ["Error from device manager",
                                                     "Failed to find an available PCI device ID"]
        assert si.get("vm.info").json()["state"] == "Created"  # no Vm kept


def test_resize(tmp_path):
    with StandIn(tmp_path) as si:
        assert si.put("vm.resize", {"desired_vcpus": 2}).status == 404
        cfg = minimal_config(tmp_path)
        cfg["cpus"] = {"boot_vcpus": 1, "max_vcpus": 4}
        assert si.put("vm.create", cfg).status == 204
        assert si.put("vm.resize", {"desired_vcpus": 2}).status == 204
        assert si.get("vm.info").json()["config"]["cpus"]["boot_vcpus"] == 2
        assert si.put("vm.boot").status == 204
        assert si.put("vm.resize", {"desired_vcpus": 3}).status == 204
        assert si.put("vm.resize", {"desired_vcpus": 8}).status == 500
        assert si.put("vm.resize", {"desired_vcpus": "x"}).status == 400
        assert "vm/resized" in names(si.events())


def test_counters(tmp_path):
    with StandIn(tmp_path) as si:
        img = tmp_path / "c.img"
        img.write_bytes(b"\0" * 512)
        booted(si, tmp_path, disks=[{"path": str(img)}])
        body = si.get("vm.counters").json()
        assert set(body["_disk0"]) == {"read_bytes", "read_ops", "write_bytes", "write_ops"}, body
        # No guest I/O: the counts grow by a fixed step per read.
        again = si.get("vm.counters").json()
        assert again["_disk0"]["read_bytes"] > body["_disk0"]["read_bytes"] > 0, (body, again)


def test_unsupported_endpoints_answer_like_ch(tmp_path):
    with StandIn(tmp_path) as si:
        r = si.put("vm.snapshot", {"destination_url": "file:///tmp/x"})
        assert r.status == 500 and chain(r)[-1] == "VM is not running"
        r = si.put("vm.restore", {"source_url": "file:///tmp/x"})
        assert r.status == 500
        r = si.put("vm.resize-zone", {"id": "z", "desired_ram": 1})
        assert r.status == 404
        r = si.put("vm.snapshot", {})
        assert r.status == 400 and "missing field `destination_url`" in chain(r)[1]


def test_no_leftover_processes_or_sockets(tmp_path):
    with StandIn(tmp_path) as si:
        pid = si.proc.pid
    assert not os.path.exists(f"/proc/{pid}") or \
        open(f"/proc/{pid}/stat").read().split()[2] == "Z"
