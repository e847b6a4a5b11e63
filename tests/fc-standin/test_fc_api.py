"""Stand-in tests: Firecracker's pre-boot/post-boot rules, resource validation
and what GET /vm/config echoes."""

import json
import os
import socket

import pytest

from fcclient import FC, make_disk, make_kernel

PRE = "The requested operation is not supported before starting the microVM."
POST = "The requested operation is not supported after starting the microVM."


@pytest.mark.parametrize("method,path,body", [
    ("PATCH", "/vm", {"state": "Paused"}),
    ("PATCH", "/vm", {"state": "Resumed"}),
    ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}),
    ("PUT", "/actions", {"action_type": "FlushMetrics"}),
    ("PUT", "/snapshot/create", {"snapshot_path": "/s", "mem_file_path": "/m"}),
    ("GET", "/balloon/statistics", None),
    ("PATCH", "/balloon", {"amount_mib": 1}),
    ("PATCH", "/drives/x", {"drive_id": "x"}),
    ("PATCH", "/network-interfaces/x", {"iface_id": "x"}),
    ("GET", "/hotplug/memory", None),
    ("DELETE", "/drives/x", None),
])
def test_post_boot_only_calls_before_boot(tmp_path, method, path, body):
    with FC(tmp_path) as fc:
        r = fc.call(method, path, body)
        assert r.status == 400 and r.fault() == PRE


def test_instance_start_rules(tmp_path):
    with FC(tmp_path) as fc:
        r = fc.action("InstanceStart")
        assert r.fault() == "Start microvm error: Cannot start microvm without kernel configuration."
        assert fc.state() == "Not started"
        fc.start()
        assert fc.state() == "Running"
        r = fc.action("InstanceStart")
        assert r.status == 400 and r.fault() == POST
        for path, body in [("/boot-source", {"kernel_image_path": make_kernel(tmp_path)}),
                           ("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}),
                           ("/logger", {"level": "Info"}),
                           ("/metrics", {"metrics_path": str(tmp_path / "m")}),
                           ("/serial", {"serial_out_path": str(tmp_path / "s")}),
                           ("/vsock", {"guest_cid": 3, "uds_path": str(tmp_path / "v")}),
                           ("/balloon", {"amount_mib": 1, "deflate_on_oom": True}),
                           ("/entropy", {}), ("/cpu-config", {}),
                           ("/hotplug/memory", {"total_size_mib": 1024}),
                           ("/snapshot/load", {"snapshot_path": "/s", "mem_file_path": "/m"})]:
            assert fc.put(path, body).fault() == POST, path
        r = fc.patch("/machine-config", {"vcpu_count": 2})
        assert r.fault() == POST
        for path in ("/", "/version", "/machine-config", "/vm/config"):
            assert fc.get(path).status == 200


def test_pause_resume_and_instance_info(tmp_path):
    with FC(tmp_path) as fc:
        fc.start()
        for state, expect in [("Paused", "Paused"), ("Paused", "Paused"), ("Resumed", "Running"),
                              ("Resumed", "Running")]:
            r = fc.patch("/vm", {"state": state})
            assert r.status == 204, r  # idempotent both ways
            assert fc.state() == expect
        assert "'pause vm' VMM action took" in fc.log()


def test_machine_config_rules(tmp_path):
    with FC(tmp_path) as fc:
        bad_vcpus = ("Machine config error: The number of vCPUs must be greater than 0, less than "
                     "32 and must be 1 or an even number if SMT is enabled.")
        for cfg in ({"vcpu_count": 0, "mem_size_mib": 128}, {"vcpu_count": 33, "mem_size_mib": 128},
                    {"vcpu_count": 3, "mem_size_mib": 128, "smt": True}):
            assert fc.put("/machine-config", cfg).fault() == bad_vcpus
        bad_mem = ("Machine config error: The memory size (MiB) is either 0, or not a multiple of "
                   "the configured page size.")
        assert fc.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 0}).fault() == bad_mem
        assert fc.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 129,
                                          "huge_pages": "2M"}).fault() == bad_mem
        assert fc.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 512, "smt": True,
                                          "track_dirty_pages": True}).status == 204
        assert fc.patch("/machine-config", {"vcpu_count": 4}).status == 204
        assert fc.get("/machine-config").json() == {
            "vcpu_count": 4, "mem_size_mib": 512, "smt": True, "track_dirty_pages": True,
            "huge_pages": "None"}
        # A PUT resets what it does not name to the defaults; a PATCH does not.
        assert fc.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 256}).status == 204
        assert fc.get("/machine-config").json() == {
            "vcpu_count": 1, "mem_size_mib": 256, "smt": False, "track_dirty_pages": False,
            "huge_pages": "None"}
        assert fc.put("/balloon", {"amount_mib": 200, "deflate_on_oom": False}).status == 204
        assert fc.patch("/machine-config", {"mem_size_mib": 100}).fault() == (
            "Machine config error: The memory size (MiB) is smaller than the previously set "
            "balloon device target size.")
        assert fc.put("/balloon", {"amount_mib": 300, "deflate_on_oom": False}).fault() == \
            "Balloon config error: Amount of pages requested is too large."


def test_boot_source_opens_files_at_put(tmp_path):
    with FC(tmp_path) as fc:
        r = fc.put("/boot-source", {"kernel_image_path": str(tmp_path / "none")})
        assert r.fault() == ("Boot source error: The kernel file cannot be opened: No such file or "
                             "directory (os error 2)")
        kernel = make_kernel(tmp_path)
        r = fc.put("/boot-source", {"kernel_image_path": kernel, "initrd_path": "/none"})
        assert r.fault() == ("Boot source error: The initrd file cannot be opened due to invalid "
                             "path or invalid permissions. No such file or directory (os error 2)")
        r = fc.put("/boot-source", {"kernel_image_path": kernel, "boot_args": "x" * 2048})
        assert r.fault().startswith("Boot source error: The kernel command line is invalid:")
        assert fc.put("/boot-source", {"kernel_image_path": kernel}).status == 204
        os.unlink(kernel)  # the kernel was opened by the PUT: deleting it changes nothing
        assert fc.action("InstanceStart").status == 204
        assert fc.get("/vm/config").json()["boot-source"] == {
            "kernel_image_path": kernel, "initrd_path": None, "boot_args": None}


def test_drives(tmp_path):
    disk = make_disk(tmp_path)
    other = make_disk(tmp_path, "data.ext4")
    with FC(tmp_path) as fc:
        r = fc.put("/drives/rootfs", {"drive_id": "rootfs", "is_root_device": True,
                                      "path_on_host": str(tmp_path / "none")})
        assert r.fault() == (
            "Drive config error: Unable to create the virtio block device: Virtio backend error: "
            f"Error manipulating the backing file: No such file or directory (os error 2) "
            f"{tmp_path / 'none'}")
        r = fc.put("/drives/x", {"drive_id": "x", "is_root_device": False})
        assert r.fault() == "Drive config error: Unable to create the virtio block device: " \
            "Invalid block config."
        data = {"drive_id": "data", "is_root_device": False, "path_on_host": other,
                "is_read_only": True, "io_engine": "Async", "cache_type": "Writeback",
                "rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100},
                                 "ops": {"size": 0, "refill_time": 100}}}
        assert fc.put("/drives/data", data).status == 204
        assert fc.put("/drives/rootfs", {"drive_id": "rootfs", "is_root_device": True,
                                         "path_on_host": disk, "partuuid": "abc"}).status == 204
        r = fc.put("/drives/second", {"drive_id": "second", "is_root_device": True,
                                      "path_on_host": disk})
        assert r.fault() == "Drive config error: A root block device already exists!"
        drives = fc.get("/vm/config").json()["drives"]
        assert [d["drive_id"] for d in drives] == ["rootfs", "data"]  # the root comes first
        assert drives[0] == {"drive_id": "rootfs", "partuuid": "abc", "is_root_device": True,
                             "cache_type": "Unsafe", "is_read_only": False, "path_on_host": disk,
                             "rate_limiter": None, "io_engine": "Sync", "socket": None}
        assert drives[1]["rate_limiter"] == {
            "bandwidth": {"size": 1000, "one_time_burst": None, "refill_time": 100}, "ops": None}
        assert drives[1]["io_engine"] == "Async" and drives[1]["is_read_only"] is True
        r = fc.put("/pmem/pm0", {"id": "pm0", "path_on_host": other, "root_device": True})
        assert r.fault() == ("Pmem config error: Attempt to add pmem as a root device while the "
                             "root device defined as a block device")
        fc.start(boot_args="console=ttyS0")
        assert "root=PARTUUID=abc rw" in fc.wait_serial("Command line:")


def test_network_interfaces(tmp_path):
    with FC(tmp_path) as fc:
        r = fc.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "x" * 16})
        assert r.fault() == ("Network config error: Could not create the network device: Open tap "
                             "device failed: Invalid interface name")
        r = fc.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "lo"})
        assert r.fault().startswith("Network config error: Could not create the network device: "
                                    "Open tap device failed: Error while creating ifreq structure")
        r = fc.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0",
                                                "mtu": 50})
        assert r.fault() == ("Network config error: Could not create the network device: MTU 50 "
                             "is out of range [68, 65535]")
        a = {"iface_id": "a", "host_dev_name": "tap-a", "guest_mac": "AA:FC:00:00:00:01"}
        assert fc.put("/network-interfaces/a", a).status == 204
        assert fc.put("/network-interfaces/b", {"iface_id": "b", "host_dev_name": "tap-b"}).status == 204
        r = fc.put("/network-interfaces/c", {"iface_id": "c", "host_dev_name": "tap-c",
                                             "guest_mac": "aa:fc:00:00:00:01"})
        assert r.fault() == "Network config error: The MAC address is already in use: aa:fc:00:00:00:01"
        assert fc.put("/network-interfaces/a", dict(a, mtu=9000)).status == 204  # replace
        nets = fc.get("/vm/config").json()["network-interfaces"]
        assert [n["iface_id"] for n in nets] == ["b", "a"]  # swap_remove + push
        assert nets[1] == {"iface_id": "a", "host_dev_name": "tap-a",
                           "guest_mac": "aa:fc:00:00:00:01", "mtu": 9000,
                           "rx_rate_limiter": None, "tx_rate_limiter": None}


def test_vsock(tmp_path):
    first, second = str(tmp_path / "v1.sock"), str(tmp_path / "v2.sock")
    with FC(tmp_path) as fc:
        assert fc.put("/vsock", {"guest_cid": 3, "uds_path": first}).status == 204
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(first)  # bound and listening at PUT time
        s.close()
        assert fc.put("/vsock", {"guest_cid": 4, "uds_path": second}).status == 204
        assert not os.path.exists(first)  # the previous socket file is removed
        assert fc.get("/vm/config").json()["vsock"] == {"guest_cid": 4, "uds_path": second}
        os.unlink(second)  # a re-PUT must remove it, fails, and loses the device
        r = fc.put("/vsock", {"guest_cid": 5, "uds_path": first})
        assert r.fault() == ("Vsock config error: Cannot create backend for vsock device: Error "
                             "binding to the host-side Unix socket: No such file or directory (os "
                             "error 2)")
        assert fc.get("/vm/config").json()["vsock"] is None
        open(first, "w").close()
        r = fc.put("/vsock", {"guest_cid": 5, "uds_path": first})
        assert r.fault().endswith("Address already in use (os error 98)")


def test_mmds(tmp_path):
    with FC(tmp_path) as fc:
        assert fc.get("/mmds").json() == {}  # pre-boot: the store is created on demand
        r = fc.patch("/mmds", {"a": 1})
        assert r.fault() == "MMDS error: The MMDS data store is not initialized."
        assert fc.put("/mmds", {"a": {"b": 1, "c": 2}}).status == 204
        assert fc.patch("/mmds", {"a": {"b": None, "d": 3}}).status == 204
        assert fc.get("/mmds").json() == {"a": {"c": 2, "d": 3}}
        r = fc.put("/mmds/config", {"network_interfaces": []})
        assert r.fault() == ("MMMDS config error: The list of network interface IDs that allow "
                             "forwarding MMDS requests is empty.")
        r = fc.put("/mmds/config", {"network_interfaces": ["eth0"]})
        assert r.fault().startswith("MMMDS config error: The list of network interface IDs "
                                    "provided contains at least one ID that does not correspond")
        fc.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"})
        r = fc.put("/mmds/config", {"network_interfaces": ["eth0"], "ipv4_address": "169.254.0.1"})
        assert r.fault() == "MMMDS config error: The MMDS IPv4 address is not link local."
        assert fc.get("/vm/config").json()["mmds-config"] is None
        assert fc.put("/mmds/config", {"network_interfaces": ["eth0"], "version": "V2"}).status == 204
        assert fc.get("/vm/config").json()["mmds-config"] == {
            "version": "V2", "network_interfaces": ["eth0"], "ipv4_address": "169.254.169.254",
            "imds_compat": False}
        big = {"k": "v" * 51300}
        r = fc.put("/mmds", json.dumps(big)[:51000] + '"}')
        assert r.status == 204
        r = fc.patch("/mmds", {"x": "y" * 300})
        assert r.status == 413
        assert r.fault() == "MMDS limit exceeded error: The MMDS patch request doesn't fit."
        fc.start()
        assert fc.get("/mmds").json()["k"].startswith("vvv")  # post-boot through eth0's stack
        assert fc.put("/mmds", {"new": 1}).status == 204
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b") as fc:
        fc.start()
        assert fc.get("/mmds").fault() == "MMDS error: The MMDS data store is not initialized."


def test_balloon_pre_and_post_boot(tmp_path):
    with FC(tmp_path) as fc:
        assert fc.get("/balloon").fault() == "Balloon config error: No balloon device found."
        cfg = {"amount_mib": 16, "deflate_on_oom": True, "stats_polling_interval_s": 1}
        assert fc.put("/balloon", cfg).status == 204
        assert fc.get("/balloon").json() == {"amount_mib": 16, "deflate_on_oom": True,
                                             "stats_polling_interval_s": 1,
                                             "free_page_hinting": False,
                                             "free_page_reporting": False}
        fc.start()
        fc.booted()
        assert fc.patch("/balloon", {"amount_mib": 32}).status == 204
        stats = fc.get("/balloon/statistics").json()
        assert stats["target_mib"] == 32 and stats["target_pages"] == 32 * 256
        assert fc.patch("/balloon", {"amount_mib": 200}).fault() == \
            "Balloon update error: Balloon: Requested memory should be less than 200MiB"
        assert fc.patch("/balloon/statistics", {"stats_polling_interval_s": 0}).fault() == \
            "Balloon update error: Balloon: Statistics cannot be enabled/disabled after activation."
        assert fc.patch("/balloon/hinting/start").fault() == \
            "Balloon update error: Balloon: Attempting to use hinting when not enabled"
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b") as fc:
        fc.start()
        assert fc.get("/balloon").fault() == \
            "Internal VMM error: Failed perform action on device: Device not found"


def test_memory_hotplug(tmp_path):
    with FC(tmp_path) as fc:
        r = fc.put("/hotplug/memory", {"total_size_mib": 100})
        assert r.fault() == "Memory hotplug config error: Total size must not be lower than slot " \
            "size (128 MiB)"
        r = fc.put("/hotplug/memory", {"total_size_mib": 1024, "block_size_mib": 3})
        assert r.fault() == "Memory hotplug config error: Block size must be a power of 2"
        assert fc.put("/hotplug/memory", {"total_size_mib": 1024}).status == 204
        assert fc.get("/vm/config").json()["memory-hotplug"] == {
            "total_size_mib": 1024, "block_size_mib": 2, "slot_size_mib": 128}
        fc.start()
        fc.booted()
        assert fc.patch("/hotplug/memory", {"requested_size_mib": 256}).status == 204
        assert fc.get("/hotplug/memory").json() == {
            "total_size_mib": 1024, "slot_size_mib": 128, "block_size_mib": 2,
            "plugged_size_mib": 256, "requested_size_mib": 256}
        r = fc.patch("/hotplug/memory", {"requested_size_mib": 2048})
        assert r.fault().startswith("Memory hotplug update error: Failed to create memory hotplug "
                                    "device: Size 2147483648 is invalid")


def test_post_boot_device_updates_and_hotplug(tmp_path):
    disk, spare = make_disk(tmp_path), make_disk(tmp_path, "spare.ext4")
    root = {"drive_id": "rootfs", "is_root_device": True, "path_on_host": disk}
    with FC(tmp_path) as fc:
        fc.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"})
        fc.start(drives=[root])
        assert fc.patch("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": spare}).status == 204
        assert fc.get("/vm/config").json()["drives"][0]["path_on_host"] == spare
        r = fc.patch("/drives/nope", {"drive_id": "nope", "path_on_host": spare})
        assert r.fault() == ("Drive config error: Unable to patch the block device: Failed "
                             "perform action on device: Device not found Please verify the "
                             "request arguments.")
        r = fc.patch("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": "/none"})
        assert r.fault().startswith("Drive config error: Unable to patch the block device: Block: "
                                    "Virtio backend error: Error manipulating the backing file")
        rl = {"bandwidth": {"size": 10, "refill_time": 10}}
        assert fc.patch("/network-interfaces/eth0", {"iface_id": "eth0", "rx_rate_limiter": rl}
                        ).status == 204
        net = fc.get("/vm/config").json()["network-interfaces"][0]
        assert net["rx_rate_limiter"]["bandwidth"]["size"] == 10 and net["tx_rate_limiter"] is None
        assert fc.patch("/network-interfaces/x", {"iface_id": "x"}).fault() == \
            "Network config error: Unable to update the net device: Failed perform action on " \
            "device: Device not found"
        extra = {"drive_id": "extra", "is_root_device": False, "path_on_host": spare}
        assert fc.put("/drives/extra", extra).fault() == "PCI is not enabled"
        assert fc.call("DELETE", "/drives/rootfs").fault() == "PCI is not enabled"
    (tmp_path / "pci").mkdir()
    with FC(tmp_path / "pci", extra=["--enable-pci"]) as fc:
        fc.start(drives=[root])
        assert "pci=off" not in fc.wait_serial("Command line:")
        extra = {"drive_id": "extra", "is_root_device": False, "path_on_host": spare}
        assert fc.put("/drives/extra", extra).status == 204
        assert fc.put("/drives/extra", extra).fault() == "Device ID in use"
        assert fc.put("/drives/r2", dict(extra, drive_id="r2", is_root_device=True)).fault() == \
            "Drive config error: A root block device already exists!"
        assert fc.call("DELETE", "/drives/rootfs").fault() == "Cannot unplug root device"
        assert fc.call("DELETE", "/drives/extra").status == 204
        assert fc.call("DELETE", "/drives/extra").fault() == "Device not found"
        assert [d["drive_id"] for d in fc.get("/vm/config").json()["drives"]] == ["rootfs"]


def test_logger_and_metrics_over_the_api(tmp_path):
    with FC(tmp_path, log=False) as fc:
        r = fc.put("/logger", {"log_path": str(tmp_path / "no" / "log")})
        assert r.fault() == ("Logger error: Failed to open target file: No such file or directory "
                             "(os error 2)")
        assert fc.put("/logger", {"log_path": str(tmp_path / "api.log"), "level": "Debug",
                                  "show_level": True}).status == 204
        fc.get("/version")
        assert ":INFO] The API server received a Get request on \"/version\"." in \
            (tmp_path / "api.log").read_text()
        m = {"metrics_path": str(tmp_path / "m.json"), "emit_id": True,
             "properties": {"team": "chcp"}}
        assert fc.put("/metrics", m).status == 204
        r = fc.put("/metrics", m)
        assert r.fault() == ("Metrics error: Cannot initialize the metrics system due to bad user "
                             "input: Reinitialization of metrics not allowed.")
        fc.start()
        assert fc.action("FlushMetrics").status == 204
        line = json.loads((tmp_path / "m.json").read_text().splitlines()[0])
        assert list(line)[:3] == ["utc_timestamp_ms", "id", "properties"]
        assert line["id"] == "vm-1" and line["properties"] == {"team": "chcp"}
        assert line["put_api_requests"]["metrics_count"] == 2


def test_serial_to_file_and_default_command_line(tmp_path):
    out = tmp_path / "serial.log"
    with FC(tmp_path) as fc:
        assert fc.put("/serial", {"serial_out_path": str(out)}).status == 204
        fc.start()
        fc.booted_file = out
        text = ""
        for _ in range(500):
            text = out.read_text()
            if "Run /sbin/init" in text:
                break
            import time
            time.sleep(0.01)
        assert "Linux version" in text and "Run /sbin/init as init process" in text
        assert fc.serial() == ""
    (tmp_path / "b").mkdir()
    with FC(tmp_path / "b") as fc:
        fc.start(boot_args=None)  # Firecracker's default command line has 8250.nr_uarts=0
        assert fc.get("/vm/config").json()["boot-source"]["boot_args"] is None
        assert fc.alive(0.1) and fc.serial() == ""
    (tmp_path / "c").mkdir()
    with FC(tmp_path / "c") as fc:
        assert fc.put("/serial", {"serial_out_path": str(tmp_path / "none" / "s")}).status == 204
        fc.configure()
        r = fc.action("InstanceStart")
        assert r.fault() == ("Start microvm error: Failed to create device manager: Error with "
                             "EventFd: No such file or directory (os error 2)")
        assert fc.state() == "Not started"


def test_full_config_before_anything(tmp_path):
    with FC(tmp_path) as fc:
        full = fc.get("/vm/config").json()
        assert list(full) == ["balloon", "drives", "boot-source", "cpu-config", "logger",
                              "machine-config", "metrics", "mmds-config", "network-interfaces",
                              "vsock", "entropy", "pmem", "memory-hotplug"]
        assert full["boot-source"] == {"kernel_image_path": "", "initrd_path": None,
                                       "boot_args": None}
        assert fc.put("/entropy", {"rate_limiter": {"ops": {"size": 5, "refill_time": 1,
                                                            "one_time_burst": 2}}}).status == 204
        assert fc.get("/vm/config").json()["entropy"] == {"rate_limiter": {
            "bandwidth": None, "ops": {"size": 5, "one_time_burst": 2, "refill_time": 1}}}
        assert fc.put("/cpu-config", {"kvm_capabilities": ["!121"]}).status == 204
        assert fc.get("/vm/config").json()["cpu-config"] is None
