// real-ch.test.mjs - the same state x operation table against a real
// cloud-hypervisor, when the machine can run one: CHCP_TEST_REAL_CH=/path/to/
// cloud-hypervisor, CHCP_TEST_KERNEL=/path/to/vmlinux (PVH ELF or bzImage,
// with ACPI so the power button works), /dev/kvm present and the CPU has vmx
// or svm. Otherwise every test is skipped and says why. (FAILED needs the
// stand-in's fault injection, so that row runs only there.)
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { Daemon, VmState, stateName } from "./lib/harness.mjs";
import { TABLE, runRow } from "./lib/table.mjs";

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
const skip = reason ? `skipped: ${reason}` : false;

describe("real Cloud Hypervisor: state x operation", () => {
  const ctx = {};
  before(async () => {
    if (reason) return;
    ctx.d = new Daemon({ chBinary: process.env.CHCP_TEST_REAL_CH, memory: 256n << 20n });
    fs.copyFileSync(process.env.CHCP_TEST_KERNEL, path.join(ctx.d.imageDir, "vmlinux"));
    await ctx.d.start();
  });
  after(async () => {
    if (!ctx.d) return;
    try {
      await ctx.d.assertClean();
      await ctx.d.stop();
    } finally {
      ctx.d.cleanup();
    }
  });
  for (const from of [VmState.CREATED, VmState.RUNNING, VmState.PAUSED, VmState.SHUTDOWN, VmState.CRASHED]) {
    test(`from ${stateName(from)}`, { skip }, async () => {
      await runRow(ctx.d, from, TABLE[from]);
      await ctx.d.assertClean();
    });
  }
});
