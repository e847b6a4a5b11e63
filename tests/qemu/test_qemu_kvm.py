"""KVM paths, gated by chcp's own KVM probe (src/vmm/kvm_probe.c), never by
CPU flags. The bare tiny guest runs wherever the probe reaches "tiny"; the
accelerator chosen for a Linux guest in auto mode must follow the probe."""
import json
import os
import subprocess

import pytest

from conftest import KVM_PROBE, guest


def probe():
    assert KVM_PROBE and os.path.exists(KVM_PROBE), "kvm-probe not built"
    r = subprocess.run([KVM_PROBE], capture_output=True, timeout=30)
    out = json.loads(r.stdout)
    assert r.returncode == {"linux": 0, "tiny": 1, "none": 2}[out["level"]]
    return out


def test_probe_verdict_is_consistent():
    out = probe()
    if out["level"] == "linux":
        assert out["failed_stage"] is None
    else:
        assert out["failed_stage"] in ("open", "vm", "tiny", "iret32", "long64")
        assert out["detail"]
    if not os.path.exists("/dev/kvm"):
        assert out["level"] == "none" and out["failed_stage"] == "open"


def test_auto_accel_follows_the_probe(vm_factory):
    out = probe()
    vm = vm_factory(["--accel", "auto", "--kernel", guest("vmlinux"), "--initrd",
                     guest("initrd.img")])
    spawned = vm.wait(lambda m: "spawned" in m)["spawned"]
    assert spawned["accel"] == ("kvm" if out["level"] == "linux" else "tcg"), spawned
    assert out["level"] in spawned["accel_why"]
    vm = vm_factory(["--tiny", "--accel", "auto", "--kernel", guest("tiny.elf")])
    spawned = vm.wait(lambda m: "spawned" in m)["spawned"]
    assert spawned["accel"] == ("tcg" if out["level"] == "none" else "kvm"), spawned


def test_tiny_guest_under_kvm(vm_factory):
    out = probe()
    if out["level"] == "none":
        pytest.skip(f"KVM probe: no usable KVM ({out['failed_stage']}: {out['detail']})")
    vm = vm_factory(["--tiny", "--accel", "kvm", "--kernel", guest("tiny.elf"), "--memory", "128",
                     "--no-pvpanic"])
    vm.ready()
    assert vm.status() == "prelaunch"
    vm.qmp("cont")
    vm.wait_console("chcp-tiny: up", timeout=30)
    mark = vm.mark()
    vm.qmp("stop")
    vm.event("STOP", start=mark)
    assert vm.status() == "paused"
    vm.qmp("cont")
    assert vm.status() == "running"
    mark = vm.mark()
    vm.qmp("system_reset")
    vm.event("RESET", start=mark)
    vm.wait_console("chcp-tiny: up", count=2, timeout=30)
