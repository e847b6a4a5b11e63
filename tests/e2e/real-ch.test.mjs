// real-ch.test.mjs - the lifecycle against a real cloud-hypervisor, when the
// machine can run one: CHCP_TEST_REAL_CH=/path/to/cloud-hypervisor,
// CHCP_TEST_KERNEL=/path/to/vmlinux (PVH ELF or bzImage), /dev/kvm present and
// the CPU has vmx or svm. Otherwise the test is skipped and says why.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { Daemon, VmState } from "./lib/harness.mjs";

function whyNot() {
  const ch = process.env.CHCP_TEST_REAL_CH;
  const kernel = process.env.CHCP_TEST_KERNEL;
  if (!ch) return "CHCP_TEST_REAL_CH is not set";
  if (!fs.existsSync(ch)) return `CHCP_TEST_REAL_CH=${ch} does not exist`;
  if (!kernel || !fs.existsSync(kernel)) return "CHCP_TEST_KERNEL (a guest kernel) is not set or missing";
  if (!fs.existsSync("/dev/kvm")) return "/dev/kvm does not exist";
  const cpu = fs.readFileSync("/proc/cpuinfo", "utf8");
  if (!/\b(vmx|svm)\b/.test(cpu)) return "the CPU has no vmx/svm flag (no hardware virtualisation)";
  return null;
}

const reason = whyNot();

describe("real Cloud Hypervisor", () => {
  test("create, boot, pause, resume, reboot, shutdown, delete", { skip: reason ? `skipped: ${reason}` : false }, async () => {
    const d = new Daemon({ chBinary: process.env.CHCP_TEST_REAL_CH });
    fs.copyFileSync(process.env.CHCP_TEST_KERNEL, path.join(d.imageDir, "vmlinux"));
    await d.start();
    try {
      const c = d.client;
      await d.createVm("real-1", { config: { memory: { size: 256n << 20n } } });
      assert.equal((await c.bootVm({ vmId: "real-1" })).vm.state, VmState.RUNNING);
      assert.equal((await c.pauseVm({ vmId: "real-1" })).vm.state, VmState.PAUSED);
      assert.equal((await c.resumeVm({ vmId: "real-1" })).vm.state, VmState.RUNNING);
      assert.equal((await c.rebootVm({ vmId: "real-1" })).vm.state, VmState.RUNNING);
      assert.equal((await c.shutdownVm({ vmId: "real-1", force: true })).vm.state, VmState.SHUTDOWN);
      assert.equal((await c.bootVm({ vmId: "real-1" })).vm.state, VmState.RUNNING);
      await c.deleteVm({ vmId: "real-1" });
      await d.assertClean();
    } finally {
      await d.stop().finally(() => d.cleanup());
    }
  });
});
