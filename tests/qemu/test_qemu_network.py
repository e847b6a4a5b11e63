"""The real guest on a TAP in a network namespace of the test's own: the
network from the kernel command line (ip=) or from a NoCloud seed
(network-config v2), ping and HTTP from the host side, instance id, boot
count across a guest-requested reboot."""
import json

from conftest import http_get, in_netns, linux_args, make_seed, make_state_disk

MAC = "52:54:00:c0:ff:ee"


def ping(ns, addr):
    r = in_netns(ns, "ping", "-c", "3", "-i", "0.3", "-W", "3", addr)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_network_from_kernel_command_line(vm_factory, netns):
    vm = vm_factory(linux_args(
        "--cont", "--tap", "tap0",
        append="quiet ip=192.0.2.2::192.0.2.1:255.255.255.0:vm-cmdline:eth0:off"), netns=netns)
    vm.ready()
    vm.wait_console("chcp-guest: ready")
    assert "ip=192.0.2.2" in vm.console()
    ping(netns, "192.0.2.2")
    info = json.loads(http_get(netns, "http://192.0.2.2/info.json"))
    assert info == {"hostname": "vm-cmdline", "instance_id": "none", "boot": 1, "ip": "192.0.2.2"}


def test_network_and_identity_from_seed_and_reboot(vm_factory, netns, tmp_path):
    seed = make_seed(tmp_path / "seed.img", {
        "meta-data": "instance-id: i-0042\nlocal-hostname: vm-seed\n",
        "user-data": "#cloud-config\n",
        "network-config": (
            "version: 2\n"
            "ethernets:\n"
            "  primary:\n"
            "    match:\n"
            f"      macaddress: \"{MAC}\"\n"
            "    addresses: [192.0.2.3/24]\n"
            "    gateway4: 192.0.2.1\n"
            "    nameservers:\n"
            "      addresses: [192.0.2.1]\n"),
    })
    state = make_state_disk(tmp_path / "state.img")
    vm = vm_factory(linux_args("--cont", "--disk", seed + ":ro", "--disk", state,
                               "--tap", f"tap0,{MAC}"), netns=netns)
    vm.ready()
    vm.wait_console("chcp-guest: instance-id=i-0042")
    vm.wait_console("chcp-guest: ready boot=1")
    ping(netns, "192.0.2.3")
    info = json.loads(http_get(netns, "http://192.0.2.3/info.json"))
    assert info == {"hostname": "vm-seed", "instance_id": "i-0042", "boot": 1, "ip": "192.0.2.3"}

    # a reboot the guest itself asks for: RESET guest=true, same QEMU
    mark = vm.mark()
    assert http_get(netns, "http://192.0.2.3/cgi-bin/reboot").strip() == "reboot"
    ev = vm.event("RESET", start=mark, timeout=60)
    assert ev["guest"] is True and ev["reason"] == "guest-reset"
    vm.wait_console("chcp-guest: ready boot=2")
    info = json.loads(http_get(netns, "http://192.0.2.3/info.json"))
    assert info["boot"] == 2 and info["instance_id"] == "i-0042"
    assert vm.status() == "running"
    with open(state, "rb") as f:
        assert f.read(12) == b"CHCPSTATE 2\n"
