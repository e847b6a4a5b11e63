// guest.test.mjs - what the guest does by itself, seen through the API: a
// poweroff (SHUTDOWN, bootable again), a reboot (stays RUNNING, reason set),
// a kernel panic (reason set), and a poweroff timer set by the guest.
// The stand-in turns SIGUSR1/SIGUSR2/SIGRTMIN into guest poweroff, reboot and
// panic.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { VmState, useDaemon, waitFor } from "./lib/harness.mjs";
import { reach } from "./lib/states.mjs";

const S = VmState;
const SIGRTMIN = 34; // glibc: the first real-time signal free for applications

async function until(d, id, pred, what) {
  return waitFor(async () => {
    const v = await d.info(id);
    return pred(v) ? v : null;
  }, 3000, what);
}

describe("guest-initiated changes", () => {
  const ctx = useDaemon();

  test("guest poweroff: SHUTDOWN with a reason, bootable again", async () => {
    const d = ctx.d;
    const vm = await reach(d, "g-off", S.RUNNING);
    process.kill(vm.vmmPid, "SIGUSR1");
    const v = await until(d, "g-off", (x) => x.state === S.SHUTDOWN, "SHUTDOWN");
    assert.equal(v.stateReason, "guest powered off");
    assert.equal(v.vmmPid, vm.vmmPid, "the VMM stays (--no-shutdown)");
    assert.equal((await d.client.bootVm({ vmId: "g-off" })).vm.state, S.RUNNING);
    await d.client.deleteVm({ vmId: "g-off" });
  });

  test("guest poweroff on its own timer", async () => {
    const d = ctx.d;
    await reach(d, "g-timer", S.RUNNING, { directives: ["standin.poweroff_after_ms=300"] });
    const v = await until(d, "g-timer", (x) => x.state === S.SHUTDOWN, "SHUTDOWN");
    assert.equal(v.stateReason, "guest powered off");
    await d.client.deleteVm({ vmId: "g-timer" });
  });

  test("guest reboot: stays RUNNING, the reason tells", async () => {
    const d = ctx.d;
    const vm = await reach(d, "g-reboot", S.RUNNING);
    process.kill(vm.vmmPid, "SIGUSR2");
    const v = await until(d, "g-reboot", (x) => x.stateReason === "guest rebooted", "reboot reason");
    assert.equal(v.state, S.RUNNING);
    assert.equal(v.vmmPid, vm.vmmPid);
    // our own RebootVm clears it and is not reported as the guest's
    const r = (await d.client.rebootVm({ vmId: "g-reboot" })).vm;
    assert.equal(r.state, S.RUNNING);
    assert.equal(r.stateReason, "");
    await d.client.deleteVm({ vmId: "g-reboot" });
  });

  test("guest panic: the reason tells, the VM keeps its state", async () => {
    const d = ctx.d;
    const vm = await reach(d, "g-panic", S.RUNNING);
    process.kill(vm.vmmPid, SIGRTMIN);
    const v = await until(d, "g-panic", (x) => x.stateReason === "guest panicked", "panic reason");
    assert.equal(v.state, S.RUNNING);
    await d.client.deleteVm({ vmId: "g-panic" });
  });
});
