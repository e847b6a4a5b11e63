"""src/net against a real kernel, inside a network namespace per test: the
bridge (created or adopted), TAPs (persistent, owned, marked, attached or
routed), nftables rules per VM (present, repaired, removed exactly, nothing
else touched), release and reconcile, and the allocation database across
process restarts and concurrent processes."""
import json
import os
import subprocess
import threading

from conftest import NET_TOOL, Tool


def sysfs(ns, dev, attr):
    return ns.out("cat", f"/sys/class/net/{dev}/{attr}").strip()


def rules_of(ns, vm, table="chcp"):
    return [r for r in ns.nft_rules(table) if r[1] == f"chcp vm={vm}"]


def test_bridge_mode_creates_the_bridge_and_attaches_owned_marked_taps(netns, state):
    tool = Tool(netns, state, mode="bridge", ipv4_cidr="10.97.0.0/24",
                ipv6_cidr="fd00:97::/64", mtu=1400)
    vm = tool.ok("setup", "web-1", "--nics", "2")
    links = netns.links()
    br = links["chcpbr0"]
    assert br["linkinfo"]["info_kind"] == "bridge"
    assert "UP" in br["flags"]
    assert int(br["address"][:2], 16) & 3 == 2  # chcp's own, locally administered
    assert netns.addrs("chcpbr0") == ["10.97.0.1/24", "fd00:97::1/64"]
    seen = set()
    for i, nic in enumerate(vm["nics"]):
        tap = links[nic["tap"]]
        assert tap["linkinfo"]["info_kind"] == "tun"
        data = tap["linkinfo"]["info_data"]
        assert data["type"] == "tap" and data["persist"] and data["vnet_hdr"]
        assert not data["pi"] and not data["multi_queue"]
        assert tap["ifalias"] == f"chcp vm=web-1 nic={i}"
        assert tap["master"] == "chcpbr0"
        assert tap["mtu"] == 1400
        assert "UP" in tap["flags"]
        assert tap["linkinfo"]["info_slave_data"]["isolated"] is False
        assert sysfs(netns, nic["tap"], "owner") == str(os.geteuid())
        assert sysfs(netns, nic["tap"], "group") == "-1"
        assert nic["tap"].startswith("chcp") and len(nic["tap"]) == 15
        v4, v6 = nic["ipv4"], nic["ipv6"]
        assert v4["address"].startswith("10.97.0.") and v4["prefix"] == 24
        assert v4["gateway"] == "10.97.0.1"
        assert v6["address"].startswith("fd00:97::") and v6["prefix"] == 64
        assert v6["gateway"] == "fd00:97::1"
        seen.add(v4["address"])
        assert int(nic["mac"][:2], 16) & 3 == 2
    assert len(seen) == 2
    assert vm["cmdline"] == (f'ip={vm["nics"][0]["ipv4"]["address"]}::10.97.0.1:'
                             "255.255.255.0:web-1::off")

    # A second call is the same call; another VM does not move the bridge's MAC.
    assert tool.ok("setup", "web-1", "--nics", "2") == vm
    tool.ok("setup", "web-2")
    assert netns.links()["chcpbr0"]["address"] == br["address"]
    # Releasing every VM leaves the bridge (shared infrastructure) as it was.
    tool.ok("release", "web-1")
    tool.ok("release", "web-2")
    links = netns.links()
    assert set(links) == {"lo", "chcpbr0"}
    assert links["chcpbr0"]["address"] == br["address"]
    assert netns.addrs("chcpbr0") == ["10.97.0.1/24", "fd00:97::1/64"]


def test_an_existing_bridge_is_used_and_a_non_bridge_refused(netns, state):
    netns.sh("ip", "link", "add", "br-ops", "type", "bridge")
    netns.sh("ip", "addr", "add", "192.0.2.1/24", "dev", "br-ops")
    # An operator's bridge with an address of its own (docs/networking.md: without
    # one the kernel gives it its lowest port's MAC); chcp does not change it.
    mac = "02:00:00:0b:0b:01"
    netns.sh("ip", "link", "set", "br-ops", "address", mac)
    tool = Tool(netns, state, mode="bridge", bridge="br-ops", ipv4_cidr="10.97.0.0/24")
    vm = tool.ok("setup", "a")
    assert netns.links()[vm["nics"][0]["tap"]]["master"] == "br-ops"
    br = netns.links()["br-ops"]
    assert br["address"] == mac and "UP" in br["flags"]
    assert netns.addrs("br-ops") == ["10.97.0.1/24", "192.0.2.1/24"]

    netns.sh("ip", "link", "add", "not-a-br", "type", "veth", "peer", "name", "not-a-br-p")
    msg = Tool(netns, state, mode="bridge", bridge="not-a-br").error("open",
                                                                     code="failed_precondition")
    assert "not-a-br exists and is not a bridge (kind 'veth')" in msg


def test_isolation_follows_the_configuration(netns, state):
    on = Tool(netns, state, mode="bridge", isolate="true")
    vm = on.ok("setup", "a")
    tap = vm["nics"][0]["tap"]
    assert netns.links()[tap]["linkinfo"]["info_slave_data"]["isolated"] is True
    assert [r[:2] for r in netns.nft_rules()] == [("forward", "chcp isolate")]
    off = Tool(netns, state, mode="bridge", isolate="false")
    off.ok("setup", "a")
    assert netns.links()[tap]["linkinfo"]["info_slave_data"]["isolated"] is False
    assert [r for r in netns.nft_rules() if r[0] == "forward"] == []


def test_tap_owner_and_group_for_an_unprivileged_vmm(netns, state):
    tool = Tool(netns, state, mode="bridge", tap_user="1234", tap_group="5678")
    tap = tool.ok("setup", "a")["nics"][0]["tap"]
    assert sysfs(netns, tap, "owner") == "1234"
    assert sysfs(netns, tap, "group") == "5678"
    assert int(sysfs(netns, tap, "tun_flags"), 16) == 0x5802  # TAP|NO_PI|VNET_HDR|PERSIST


def test_routed_mode_gives_each_nic_its_own_link(netns, state):
    tool = Tool(netns, state, mode="routed", ipv4_cidr="10.98.0.0/24", ipv6_cidr="fd00:98::/120")
    a = tool.ok("setup", "a", "--nics", "2")
    b = tool.ok("setup", "b")
    links = netns.links()
    blocks = set()
    for nic in a["nics"] + b["nics"]:
        tap, v4, v6 = nic["tap"], nic["ipv4"], nic["ipv6"]
        assert "master" not in links[tap] and "UP" in links[tap]["flags"]
        assert v4["prefix"] == 30 and v6["prefix"] == 126
        last = int(v4["address"].rsplit(".", 1)[1])
        assert last % 4 == 2 and v4["gateway"] == f"10.98.0.{last - 1}"
        assert netns.addrs(tap) == sorted([f'{v4["gateway"]}/30', f'{v6["gateway"]}/126'])
        route = netns.out("ip", "-j", "route", "get", v4["address"])
        assert json.loads(route)[0]["dev"] == tap
        blocks.add(last // 4)
    assert len(blocks) == 3
    assert a["cmdline"].startswith(f'ip={a["nics"][0]["ipv4"]["address"]}::'
                                   f'{a["nics"][0]["ipv4"]["gateway"]}:255.255.255.252:a::off')


def test_nat_and_port_forward_rules_are_per_vm_and_removed_exactly(netns, state):
    tool = Tool(netns, state, mode="bridge", nat="1", ipv4_cidr="10.97.0.0/24")
    a = tool.ok("setup", "a", "--forward", "tcp:8080:80")
    tool.ok("setup", "b", "--forward", "tcp:8081:80", "--forward", "udp:5353:53")
    assert netns.nft_chains() == ["forward", "output", "postrouting", "prerouting"]
    assert netns.out("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
    ra, rb = rules_of(netns, "a"), rules_of(netns, "b")
    assert sorted(r[0] for r in ra) == ["output", "postrouting", "prerouting"]
    assert len(rb) == 5
    text = netns.out("nft", "list", "chain", "inet", "chcp", "prerouting")
    assert f'tcp dport 8080 dnat ip to {a["nics"][0]["ipv4"]["address"]}:80' in text
    # Somebody else's table, and an operator's own rule inside chcp's table.
    netns.sh("nft", "add table inet other; add chain inet other c; add rule inet other c counter")
    netns.sh("nft", "add rule inet chcp postrouting counter comment \"operator\"")
    # Port clash with b.
    msg = tool.error("setup", "c", "--forward", "tcp:8081:81", code="already_exists")
    assert msg == "host port tcp/8081 is forwarded to VM b"
    # Setting a up again does not duplicate its rules; a flushed table is repaired.
    tool.ok("setup", "a", "--forward", "tcp:8080:80")
    assert len(rules_of(netns, "a")) == 3
    netns.sh("nft", "flush", "table", "inet", "chcp")
    tool.ok("setup", "a", "--forward", "tcp:8080:80")
    assert len(rules_of(netns, "a")) == 3
    tool.ok("setup", "b", "--forward", "tcp:8081:80", "--forward", "udp:5353:53")
    netns.sh("nft", "add rule inet chcp postrouting counter comment \"operator\"")
    # Release a: exactly its rules go.
    tool.ok("release", "a")
    assert rules_of(netns, "a") == []
    assert len(rules_of(netns, "b")) == 5
    assert [r for r in netns.nft_rules() if r[1] == "operator"]
    assert len(netns.nft_rules("other")) == 1
    # And a's port is free for someone else now.
    tool.ok("setup", "c", "--forward", "tcp:8080:80")


def test_release_removes_everything_and_is_idempotent(netns, state, tmp_path):
    vm_dir = tmp_path / "vm-a"
    vm_dir.mkdir(mode=0o700)
    tool = Tool(netns, state, mode="bridge", nat="1", ipv4_cidr="10.97.0.0/24")
    a = tool.ok("setup", "a", "--nics", "2", "--ipv4", "0=10.97.0.50", "--forward",
                "tcp:2222:22", "--dir", str(vm_dir))
    assert a["seed"] == str(vm_dir / "cidata.iso") and os.path.exists(a["seed"])
    tool.ok("release", "a", "--dir", str(vm_dir))
    links = netns.links()
    assert not any(n["tap"] in links for n in a["nics"])
    assert rules_of(netns, "a") == []
    assert not os.path.exists(a["seed"])
    assert tool.ok("get", "a")["nics"] == []
    tool.ok("release", "a", "--dir", str(vm_dir))  # again: nothing to do, no error
    tool.ok("release", "never-existed")
    # Its address and port are free.
    b = tool.ok("setup", "b", "--ipv4", "0=10.97.0.50", "--forward", "tcp:2222:22")
    assert b["nics"][0]["ipv4"]["address"] == "10.97.0.50"


def test_a_tap_removed_behind_chcps_back_is_recreated(netns, state):
    tool = Tool(netns, state, mode="bridge")
    a = tool.ok("setup", "a")
    tap = a["nics"][0]["tap"]
    netns.sh("ip", "link", "delete", tap)
    assert tool.ok("setup", "a") == a
    assert netns.links()[tap]["master"] == "chcpbr0"


def test_reconcile_removes_only_what_chcp_owns(netns, state):
    tool = Tool(netns, state, mode="bridge", nat="1", ipv4_cidr="10.97.0.0/24")
    a = tool.ok("setup", "a", "--forward", "tcp:8080:80")
    b = tool.ok("setup", "b", "--nics", "2", "--forward", "tcp:8081:80")
    c = tool.ok("setup", "c")
    # Not chcp's: the prefix without the mark, the mark without the prefix,
    # a marked link that is not a TAP.
    netns.sh("ip", "tuntap", "add", "dev", "chcpforeign0", "mode", "tap")
    netns.sh("ip", "tuntap", "add", "dev", "othertap0", "mode", "tap")
    netns.sh("ip", "link", "set", "othertap0", "alias", "chcp vm=zzz nic=0")
    netns.sh("ip", "link", "add", "chcpveth0", "type", "veth", "peer", "name", "chcpveth1")
    netns.sh("ip", "link", "set", "chcpveth0", "alias", "chcp vm=zzz nic=0")
    res = tool.ok("reconcile", "a", "some-other-vm")
    assert res == {"taps": 3, "rules": 4, "allocations": 2}
    links = netns.links()
    assert a["nics"][0]["tap"] in links
    assert not any(n["tap"] in links for n in b["nics"] + c["nics"])
    assert {"chcpforeign0", "othertap0", "chcpveth0", "chcpbr0"} <= set(links)
    assert len(rules_of(netns, "a")) == 3 and rules_of(netns, "b") == []
    assert tool.ok("get", "b")["nics"] == [] and tool.ok("get", "a")["nics"] != []
    assert tool.ok("reconcile", "a") == {"taps": 0, "rules": 0, "allocations": 0}
    # Nothing is live: everything of chcp's goes, the rest stays.
    assert tool.ok("reconcile") == {"taps": 1, "rules": 3, "allocations": 1}
    assert {"chcpforeign0", "othertap0", "chcpveth0"} <= set(netns.links())


def test_allocations_survive_restarts_and_concurrent_processes(netns, state):
    tool = Tool(netns, state, mode="bridge", ipv4_cidr="10.97.0.0/24")
    a = tool.ok("setup", "a")  # each call is a new process
    b = tool.ok("setup", "b")
    assert tool.ok("setup", "a") == a
    assert tool.ok("get", "b")["nics"] == b["nics"]
    results, errors = {}, []

    def one(i):
        rc, doc = tool.call("setup", f"p-{i}")
        (results.__setitem__(i, doc) if rc == 0 else errors.append(doc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    nics = [r["nics"][0] for r in results.values()] + a["nics"] + b["nics"]
    for key in ("tap", "mac"):
        assert len({n[key] for n in nics}) == 14, key
    assert len({n["ipv4"]["address"] for n in nics}) == 14


def test_requests_and_refusals(netns, state, tmp_path):
    tool = Tool(netns, state, mode="bridge", ipv4_cidr="10.97.0.0/24")
    a = tool.ok("setup", "a", "--mac", "0=52:54:00:12:34:56", "--ipv4", "0=10.97.0.77",
                "--hostname", "web.example")
    assert a["nics"][0]["mac"] == "52:54:00:12:34:56"
    assert a["nics"][0]["ipv4"]["address"] == "10.97.0.77"
    assert ":web.example::off" in a["cmdline"]
    assert "belongs to VM a" in tool.error("setup", "b", "--mac", "0=52:54:00:12:34:56",
                                           code="already_exists")
    assert "belongs to VM a" in tool.error("setup", "b", "--ipv4", "0=10.97.0.77",
                                           code="already_exists")
    tool.error("setup", "b", "--ipv4", "0=10.97.0.1", code="invalid_argument")
    tool.error("setup", "b", "--mac", "0=01:00:5e:00:00:01", code="invalid_argument")
    tool.error("setup", "b", "--hostname", "-bad-", code="invalid_argument")
    tool.error("setup", "Bad_Id", code="invalid_argument")
    tool.error("setup", "b", "--nics", "9", code="invalid_argument")
    tool.error("setup", "b", "--nics", "0", "--forward", "tcp:1:1", code="invalid_argument")
    tool.error("setup", "b", "--forward", "tcp:0:80", code="invalid_argument")
    tool.error("setup", "b", "--forward", "sctp:9:9", code="invalid_argument")
    tool.error("setup", "b", "--forward", "tcp:9:9", "--forward", "tcp:9:10",
               code="invalid_argument")
    big = tmp_path / "big"
    big.write_bytes(b"#" * ((1 << 20) + 1))
    tool.error("setup", "b", "--user-data", str(big), code="invalid_argument")
    off = Tool(netns, state, mode="off")
    assert "networking is off" in off.error("setup", "b", code="failed_precondition")
    # Nothing of the refused VM was kept.
    assert tool.ok("get", "b")["nics"] == []
    # The TAP's name is taken by an interface that is not chcp's.
    tap = tool.ok("setup", "x")["nics"][0]["tap"]
    tool.ok("release", "x")
    netns.sh("ip", "link", "add", tap, "type", "veth", "peer", "name", "xpeer")
    msg = tool.error("setup", "x", code="failed_precondition")
    assert f"interface {tap} exists and is not chcp's TAP for VM x NIC 0" in msg


def test_tap_open(netns, state):
    tool = Tool(netns, state, mode="bridge")
    tap = tool.ok("setup", "a")["nics"][0]["tap"]
    assert tool.ok("tap-open", tap) == {"ok": True}
    tool.error("tap-open", "chcpbr0", code="not_found")
    tool.error("tap-open", "nosuchtap", code="not_found")
    # Held by a VMM: one queue only.
    holder = subprocess.Popen(
        ["ip", "netns", "exec", netns.name, "python3", "-c",
         "import fcntl, struct, sys, time\n"
         "fd = open('/dev/net/tun', 'r+b', buffering=0)\n"
         f"fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH22x', b'{tap}', 0x1002 | 0x4000))\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        assert "TAP " + tap in tool.error("tap-open", tap, code="failed_precondition")
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    tool.ok("tap-open", tap)


def test_mode_off_touches_no_interface_or_table(netns, state, tmp_path):
    vm_dir = tmp_path / "vm"
    vm_dir.mkdir(mode=0o700)
    tool = Tool(netns, state, mode="off")
    vm = tool.ok("setup", "a", "--nics", "0", "--dir", str(vm_dir))
    assert vm["nics"] == [] and vm["cmdline"] is None
    assert os.path.exists(vm["seed"])
    assert set(netns.links()) == {"lo"}
    assert netns.nft_chains() == []
    tool.ok("release", "a", "--dir", str(vm_dir))
    assert not os.path.exists(vm["seed"])


def test_configuration_errors_name_the_setting(netns, state):
    tool = Tool(netns, state, mode="sideways")
    assert tool.error("open", status=2) == "CHCP_NET_MODE: 'sideways' is not off, bridge or routed"
    msg = Tool(netns, state, mode="bridge").error("open", status=2,
                                                  flags=("--net-mtu", "12"))
    assert msg.startswith("--net-mtu: '12'")
    assert os.path.exists(NET_TOOL)
