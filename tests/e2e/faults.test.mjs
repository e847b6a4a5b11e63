// faults.test.mjs - every fault the stand-in can inject, seen through the
// API: failing boots (with and without a kept VM), a VMM crashing in the
// middle of a call, a hung VMM (timeouts, GetVmInfo within a second, DeleteVm
// still cleaning up), slow answers, a VMM killed with SIGKILL, and a VMM that
// dies before answering its first ping (its stderr in the error).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { Code, Daemon, STANDIN, VmState, expectCode, useDaemon, waitFor } from "./lib/harness.mjs";
import { outcome, reach } from "./lib/states.mjs";

const S = VmState;

describe("injected faults", () => {
  const ctx = useDaemon();

  test("vm.boot fails without keeping a VM: back to CREATED, then boots", async () => {
    const d = ctx.d;
    await d.createVm("fb-1", { directives: ["standin.fail_boot=1", "standin.fail_boot_times=1"] });
    const err = await expectCode(d.client.bootVm({ vmId: "fb-1" }), Code.Internal, "injected boot failure");
    assert.match(err.rawMessage, /vm\.boot/);
    assert.equal((await d.info("fb-1")).state, S.CREATED);
    const vm = (await d.client.bootVm({ vmId: "fb-1" })).vm;
    assert.equal(vm.state, S.RUNNING);
    await d.client.deleteVm({ vmId: "fb-1" });
  });

  test("vm.boot fails after CH kept a VM: FAILED with the reason", async () => {
    const d = ctx.d;
    const vm = await reach(d, "fb-2", S.FAILED);
    assert.equal(vm.state, S.FAILED);
    assert.match(vm.stateReason, /boot failed/);
    await expectCode(d.client.bootVm({ vmId: "fb-2" }), Code.FailedPrecondition, "FAILED");
    await d.client.deleteVm({ vmId: "fb-2" });
  });

  test("the VMM crashes in the middle of a call: unavailable, CRASHED with the signal", async () => {
    const d = ctx.d;
    await reach(d, "crash-1", S.RUNNING, { directives: ["standin.crash_on=vm.pause"] });
    const err = await expectCode(d.client.pauseVm({ vmId: "crash-1" }), Code.Unavailable);
    console.log("pending call on a crashing VMM:", err.rawMessage);
    assert.match(err.rawMessage, /signal 6|SIGABRT|ABRT/, "the exit reason is in the error");
    const vm = await waitFor(async () => {
      const v = await d.info("crash-1");
      return v.state === S.CRASHED ? v : null;
    }, 2000, "CRASHED");
    assert.equal(vm.vmmExit.signal, 6);
    assert.equal(vm.vmmPid, 0);
    assert.match(vm.stateReason, /signal 6/);
    // a crash during boot
    await d.createVm("crash-2", { directives: ["standin.crash_on=vm.boot", "standin.crash_signal=SEGV"] });
    await expectCode(d.client.bootVm({ vmId: "crash-2" }), Code.Unavailable);
    const v2 = await waitFor(async () => {
      const v = await d.info("crash-2");
      return v.state === S.CRASHED ? v : null;
    }, 2000, "CRASHED");
    assert.equal(v2.vmmExit.signal, 11);
    for (const id of ["crash-1", "crash-2"]) await d.client.deleteVm({ vmId: id });
  });

  test("a VMM killed with SIGKILL is CRASHED at once", async () => {
    const d = ctx.d;
    const vm = await reach(d, "kill-1", S.RUNNING);
    const t0 = Date.now();
    process.kill(vm.vmmPid, "SIGKILL");
    const v = await waitFor(async () => {
      const x = await d.info("kill-1");
      return x.state === S.CRASHED ? x : null;
    }, 1000, "CRASHED within a second");
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(v.vmmExit.signal, 9);
    assert.match(v.stateReason, /signal 9/);
    await expectCode(d.client.pauseVm({ vmId: "kill-1" }), Code.FailedPrecondition, "CRASHED");
    await d.client.deleteVm({ vmId: "kill-1" });
  });

  test("a hung VMM: GetVmInfo answers within a second, calls time out, DeleteVm still works", async () => {
    const d = ctx.d;
    await reach(d, "hang-1", S.RUNNING, { directives: ["standin.hang_on=vm.info"] });
    const t0 = Date.now();
    const vm = await d.info("hang-1");
    const took = Date.now() - t0;
    assert.ok(took < 1000, `GetVmInfo took ${took} ms`);
    assert.equal(vm.state, S.RUNNING);
    assert.match(vm.stateReason, /VMM not responding/);
    // mutations now wait for the stuck VMM and give up with unavailable;
    // meanwhile the daemon serves other VMs without delay
    let pauseAnswered = false;
    const pausing = outcome(d.client.pauseVm({ vmId: "hang-1" })).then((r) => {
      pauseAnswered = true;
      return r;
    });
    const other = await reach(d, "hang-2", S.RUNNING);
    assert.equal(other.state, S.RUNNING);
    // An event loop blocked behind the stuck VMM would serve hang-2 only
    // after the pause gave up (the 10 s call timeout): order, not a clock.
    assert.equal(pauseAnswered, false, "another VM was served only after the stuck call gave up");
    const p = await pausing;
    assert.equal(p.ok, false);
    assert.equal(Code[p.code], Code[Code.Unavailable], p.message);
    assert.match(p.message, /not responding/);
    const pid = (await d.client.listVms({})).vms.find((v) => v.vmId === "hang-1").vmmPid;
    await d.client.deleteVm({ vmId: "hang-1" });
    assert.equal(fs.existsSync(`/proc/${pid}`), false, "the hung VMM was killed");
    await d.client.deleteVm({ vmId: "hang-2" });
  });

  test("a hung call with a client deadline: deadline_exceeded, the next call waits its turn", async () => {
    const d = ctx.d;
    await reach(d, "hang-3", S.RUNNING, { directives: ["standin.hang_on=vm.pause"] });
    await expectCode(d.client.pauseVm({ vmId: "hang-3" }, { timeoutMs: 300 }), Code.DeadlineExceeded);
    await d.client.deleteVm({ vmId: "hang-3" });
  });

  test("slow answers: the whole lifecycle still works", async () => {
    const d = ctx.d;
    await d.createVm("slow-1", { directives: ["standin.api_delay_ms=150"] });
    for (const [op, want] of [
      ["bootVm", S.RUNNING],
      ["pauseVm", S.PAUSED],
      ["resumeVm", S.RUNNING],
      ["rebootVm", S.RUNNING],
    ]) {
      const vm = (await d.client[op]({ vmId: "slow-1" })).vm;
      assert.equal(vm.state, want, op);
    }
    assert.equal((await d.client.shutdownVm({ vmId: "slow-1" })).vm.state, S.SHUTDOWN);
    await d.client.deleteVm({ vmId: "slow-1" });
  });
});

describe("VMM start failures", () => {
  test("a VMM without /dev/kvm (the stand-in's no_kvm): CH's error chain in the error", async () => {
    // A wrapper drops the stand-in's start-up faults file next to --log-file
    // (the VM's directory, created by chcp just before the spawn).
    const dir = fs.mkdtempSync("/tmp/chcp-e2e-nokvm-");
    const wrapper = path.join(dir, "cloud-hypervisor");
    fs.writeFileSync(
      wrapper,
      `#!/bin/sh
prev=
for a in "$@"; do
  case "$prev" in --log-file) log="$a" ;; esac
  case "$a" in --log-file=*) log="\${a#--log-file=}" ;; esac
  prev="$a"
done
log="\${log#path=}"
echo no_kvm=1 > "\${log%/*}/standin-faults"
exec ${STANDIN} "$@"
`,
      { mode: 0o755 },
    );
    const d = await new Daemon({ chBinary: wrapper }).start();
    try {
      const err = await expectCode(d.createVm("nokvm-2"), Code.Unavailable);
      assert.match(err.rawMessage, /no supported hypervisor/);
      await expectCode(d.client.getVmInfo({ vmId: "nokvm-2" }), Code.NotFound);
      await d.assertClean();
    } finally {
      await d.stop().finally(() => d.cleanup());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a VMM that exits before its first ping: unavailable with its stderr, nothing kept", async () => {
    const dir = fs.mkdtempSync("/tmp/chcp-e2e-fakech-");
    const script = path.join(dir, "cloud-hypervisor");
    fs.writeFileSync(
      script,
      "#!/bin/sh\necho 'Error: Cloud Hypervisor exited with the following chain of errors: no supported hypervisor' >&2\nexit 1\n",
      { mode: 0o755 },
    );
    const d = await new Daemon({ chBinary: script }).start();
    try {
      const err = await expectCode(d.createVm("nokvm"), Code.Unavailable);
      assert.match(err.rawMessage, /no supported hypervisor/);
      await expectCode(d.client.getVmInfo({ vmId: "nokvm" }), Code.NotFound);
      await d.assertClean();
    } finally {
      await d.stop().finally(() => d.cleanup());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
