"""The real guest (tests/guest) on QEMU with chcp's networking, in a network
namespace of the test's own: src/net sets the VM up, opens the TAP queues it
created and QEMU gets them as -netdev tap,fd= (tests/net/net_vm.c). The guest
learns its addresses from the NoCloud seed or from ip= on the kernel command
line. Checked from the host side: ping and HTTP; between guests: connected or
isolated per configuration; outwards: NAT and a port forward through a second
namespace standing in for the outside world; and that a killed VMM's
networking is released completely."""
import json
import os
import signal
import subprocess
import time

from conftest import Tool, http_get, ping

BRIDGE = {"mode": "bridge", "ipv4_cidr": "10.97.0.0/24", "ipv6_cidr": "fd00:97::/64"}


def peer_script(tmp_path, peer):
    """user-data: ping the peer once a second, say each outcome on the console."""
    path = tmp_path / "peer.sh"
    path.write_text("#!/bin/sh\n"
                    "i=0\n"
                    "while [ $i -lt 300 ]; do\n"
                    "  i=$((i + 1))\n"
                    f"  if ping -c 1 -W 1 {peer} >/dev/null 2>&1; then\n"
                    "    echo 'chcp-test: peer ok' > /dev/console; exit 0\n"
                    "  fi\n"
                    "  echo \"chcp-test: peer try $i failed\" > /dev/console\n"
                    "  sleep 1\n"
                    "done\n")
    return str(path)


def info(ns, addr):
    return json.loads(http_get(ns, f"http://{addr}/info.json"))


def kill_vmm_and_release(tool, ns, vm, vm_id):
    """kill -9 of the VMM, then what the VM manager does for a crashed VM."""
    net = vm.net()
    os.kill(vm.wait("spawned")["pid"], signal.SIGKILL)
    assert vm.wait("exit")["signal"] == signal.SIGKILL
    taps = [n["tap"] for n in net["nics"]]
    assert all(t in ns.links() for t in taps)  # persistent: the crash alone leaves them
    tool.ok("release", vm_id, "--dir", vm.dir)
    links = ns.links()
    assert not any(t in links for t in taps)
    assert [r for r in ns.nft_rules() if r[1] == f"chcp vm={vm_id}"] == []
    assert tool.ok("get", vm_id)["nics"] == []
    assert not os.path.exists(os.path.join(vm.dir, "cidata.iso"))


def test_bridge_guests_reach_each_other_and_the_host(guest_factory, netns, state, tmp_path):
    tool = Tool(netns, state, **BRIDGE)
    b = guest_factory(netns, state, "vm-b", BRIDGE, "--cmdline", "--no-seed")
    b_addr = b.net()["nics"][0]["ipv4"]
    a = guest_factory(netns, state, "vm-a", BRIDGE, "--user-data", peer_script(tmp_path, b_addr))
    a_net = a.net()["nics"][0]
    a.wait_console("chcp-guest: ready")
    b.wait_console("chcp-guest: ready")
    assert "chcp-guest: instance-id=vm-a" in a.console()  # from the seed
    assert f"ip={b_addr}" in b.console()  # from ip= on the command line
    for addr in (a_net["ipv4"], b_addr):
        ping(netns, addr)
    ping(netns, a_net["ipv6"])  # the seed's network-config carries IPv6 too
    assert info(netns, a_net["ipv4"]) == {"hostname": "vm-a", "instance_id": "vm-a", "boot": 1,
                                          "ip": a_net["ipv4"]}
    assert info(netns, b_addr)["hostname"] == "vm-b"
    assert http_get(netns, f"http://[{a_net['ipv6']}]/info.json")
    a.wait_console("chcp-test: peer ok")

    kill_vmm_and_release(tool, netns, a, "vm-a")
    ping(netns, b_addr)  # the other VM is untouched


def test_isolated_guests_reach_the_host_but_not_each_other(guest_factory, netns, state,
                                                           tmp_path):
    settings = dict(BRIDGE, isolate="true")
    b = guest_factory(netns, state, "vm-b", settings, "--cmdline", "--no-seed")
    b_addr = b.net()["nics"][0]["ipv4"]
    a = guest_factory(netns, state, "vm-a", settings, "--user-data",
                      peer_script(tmp_path, b_addr))
    a_addr = a.net()["nics"][0]["ipv4"]
    a.wait_console("chcp-guest: ready")
    b.wait_console("chcp-guest: ready")
    ping(netns, a_addr)
    ping(netns, b_addr)
    assert info(netns, a_addr)["instance_id"] == "vm-a"
    assert info(netns, b_addr)["hostname"] == "vm-b"
    # B answers the host now; A keeps trying: four more failed attempts while
    # B is up and reachable, and never a success.
    tries = a.console().count("chcp-test: peer try")
    deadline = time.monotonic() + 120
    while a.console().count("chcp-test: peer try") < tries + 4:
        assert "chcp-test: peer ok" not in a.console(), "vm-a reached vm-b while isolated"
        assert time.monotonic() < deadline, a.console()[-1500:]
        time.sleep(0.5)
    ping(netns, b_addr)
    assert "chcp-test: peer ok" not in a.console()


def test_routed_guest_with_nat_and_a_port_forward(guest_factory, netns_factory, state,
                                                  tmp_path):
    host, outside = netns_factory(), netns_factory()
    # The outside world: a namespace behind a veth, with no route to the guests.
    host.sh("ip", "link", "add", "up0", "type", "veth", "peer", "name", "down0", "netns",
            outside.name)
    host.sh("ip", "addr", "add", "198.51.100.1/24", "dev", "up0")
    host.sh("ip", "link", "set", "up0", "up")
    outside.sh("ip", "addr", "add", "198.51.100.2/24", "dev", "down0")
    outside.sh("ip", "link", "set", "down0", "up")
    log = tmp_path / "outside.log"
    www = tmp_path / "www"
    www.mkdir()
    (www / "from-guest").write_text("hello\n")
    server = subprocess.Popen(["ip", "netns", "exec", outside.name, "python3", "-m",
                               "http.server", "8000", "--bind", "198.51.100.2", "--directory",
                               str(www)],
                              stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        settings = {"mode": "routed", "ipv4_cidr": "10.98.0.0/24", "nat": "true"}
        script = tmp_path / "out.sh"
        script.write_text("#!/bin/sh\n"
                          "for i in $(seq 1 120); do\n"
                          "  wget -q -O /dev/null http://198.51.100.2:8000/from-guest && "
                          "{ echo 'chcp-test: outside ok' > /dev/console; exit 0; }\n"
                          "  sleep 1\n"
                          "done\n")
        vm = guest_factory(host, state, "vm-r", settings, "--user-data", str(script),
                           "--forward", "tcp:8080:80")
        nic = vm.net()["nics"][0]
        assert nic["ipv4"].startswith("10.98.0.")
        vm.wait_console("chcp-guest: ready")
        ping(host, nic["ipv4"])
        # Out through NAT: the outside sees the host's address, never the guest's.
        vm.wait_console("chcp-test: outside ok")
        text = log.read_text()
        assert "198.51.100.1 - - " in text and "GET /from-guest" in text
        assert "10.98.0." not in text
        # In through the port forward: from outside, and from the host itself.
        assert json.loads(http_get(outside, "http://198.51.100.1:8080/info.json")) == {
            "hostname": "vm-r", "instance_id": "vm-r", "boot": 1, "ip": nic["ipv4"]}
        assert json.loads(http_get(host, "http://198.51.100.1:8080/info.json"))["ip"] == nic["ipv4"]
        kill_vmm_and_release(Tool(host, state, **settings), host, vm, "vm-r")
        r = outside.sh("curl", "-sS", "--max-time", "3", "http://198.51.100.1:8080/", check=False)
        assert r.returncode != 0  # the forward went with the VM
    finally:
        server.kill()
        server.wait()
