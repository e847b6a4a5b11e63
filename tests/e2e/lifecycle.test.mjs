// lifecycle.test.mjs - the full state x operation table through the real
// daemon and the CH stand-in, DeleteVm from every state (including in the
// middle of CreateVm, BootVm and ShutdownVm), idempotent CreateVm, ListVms.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { describe, test } from "node:test";
import { Code, VmState, expectCode, stateName, useDaemon, waitFor } from "./lib/harness.mjs";
import { outcome, reach } from "./lib/states.mjs";
import { OPS, TABLE, call, runRow } from "./lib/table.mjs";

const S = VmState;

describe("state x operation", () => {
  const ctx = useDaemon();
  for (const [start, row] of Object.entries(TABLE)) {
    const from = Number(start);
    test(`from ${stateName(from)}`, async () => {
      await runRow(ctx.d, from, row);
    });
  }

  // The same table when the VMM delivers its events late (CH queues them to a
  // monitor thread; the stand-in's event_delay_ms): a forced shutdown's
  // vm/shutdown then arrives after the next boot, which must change nothing.
  for (const [start, row] of Object.entries(TABLE)) {
    const from = Number(start);
    test(`from ${stateName(from)}, VMM events 300 ms late`, async () => {
      await runRow(ctx.d, from, row, { directives: ["standin.event_delay_ms=300"] });
    });
  }

  test("unknown VMs are not_found for every call", async () => {
    const d = ctx.d;
    for (const op of OPS) await expectCode(call(d, op, "nope"), Code.NotFound, "nope");
    await expectCode(d.client.deleteVm({ vmId: "nope" }), Code.NotFound);
  });

  test("a VM record carries what the API promises", async () => {
    const d = ctx.d;
    const vm = await d.createVm("rec-1", { labels: { env: "test", team: "vm" } });
    assert.equal(vm.state, S.CREATED);
    assert.equal(vm.vmmState, "Created");
    assert.ok(vm.vmmPid > 0);
    assert.ok(fs.existsSync(`/proc/${vm.vmmPid}`));
    assert.deepEqual({ ...vm.labels }, { env: "test", team: "vm" });
    assert.equal(vm.config.payload.kernel, d.kernel);
    assert.ok(vm.createdAt && vm.updatedAt && vm.stateChangedAt);
    const st = fs.statSync(d.vmDir("rec-1"));
    assert.equal(st.mode & 0o777, 0o700);
    const booted = (await d.client.bootVm({ vmId: "rec-1" })).vm;
    assert.equal(booted.state, S.RUNNING);
    assert.ok(booted.stateChangedAt.seconds >= vm.stateChangedAt.seconds);
    const info = await d.info("rec-1");
    assert.equal(info.vmmState, "Running");
    assert.ok(info.memoryActualSize > 0n);
    await d.client.deleteVm({ vmId: "rec-1" });
    await waitFor(() => !fs.existsSync(`/proc/${vm.vmmPid}`), 3000, "VMM gone");
  });

  test("CreateVm is idempotent for the same config and refuses a different one", async () => {
    const d = ctx.d;
    const a = await d.createVm("same-1");
    const b = await d.createVm("same-1");
    assert.equal(b.vmmPid, a.vmmPid);
    await expectCode(d.createVm("same-1", { config: { memory: { size: 128n << 20n } } }), Code.AlreadyExists);
    await expectCode(d.createVm("same-1", { labels: { x: "y" } }), Code.AlreadyExists);
    // concurrent identical creates: one VMM, both succeed
    const [c1, c2] = await Promise.all([d.createVm("same-2"), d.createVm("same-2")]);
    assert.equal(c1.vmmPid, c2.vmmPid);
    // a generated id
    const g = (await d.client.createVm({ config: d.config() })).vm;
    assert.match(g.vmId, /^vm-[0-9a-f]{12}$/);
    for (const id of ["same-1", "same-2", g.vmId]) await d.client.deleteVm({ vmId: id });
  });

  test("DeleteVm in the middle of CreateVm, BootVm and ShutdownVm", async () => {
    const d = ctx.d;
    // mid-create: vm.create never answers
    const creating = outcome(d.createVm("mid-create", { directives: ["standin.hang_on=vm.create"] }).then((vm) => ({ vm })));
    await waitFor(async () => (await outcome(d.client.getVmInfo({ vmId: "mid-create" }))).vm?.state === S.CREATING, 3000, "CREATING");
    await d.client.deleteVm({ vmId: "mid-create" });
    const cr = await creating;
    assert.equal(cr.ok, false);
    assert.equal(Code[cr.code], Code[Code.Aborted], cr.message);
    // mid-boot: a slow boot, deleted twice concurrently
    await d.createVm("mid-boot", { directives: ["standin.boot_delay_ms=3000"] });
    const booting = outcome(d.client.bootVm({ vmId: "mid-boot" }));
    await waitFor(async () => (await d.info("mid-boot")).state === S.BOOTING, 2000, "BOOTING");
    const queued = outcome(d.client.pauseVm({ vmId: "mid-boot" }));
    const [d1, d2] = await Promise.all([d.client.deleteVm({ vmId: "mid-boot" }), d.client.deleteVm({ vmId: "mid-boot" })]);
    assert.equal(d1.vmId, "mid-boot");
    assert.equal(d2.vmId, "mid-boot");
    assert.equal((await booting).code, Code.Aborted);
    assert.equal((await queued).code, Code.Aborted);
    // mid-shutdown: the guest ignores the power button
    await reach(d, "mid-sd", S.RUNNING, { directives: ["standin.ignore_power_button=1"] });
    const sd = outcome(d.client.shutdownVm({ vmId: "mid-sd", gracefulTimeout: { seconds: 30n } }));
    await waitFor(async () => (await d.info("mid-sd")).state === S.SHUTTING_DOWN, 2000, "SHUTTING_DOWN");
    await d.client.deleteVm({ vmId: "mid-sd" });
    assert.equal((await sd).code, Code.Aborted);
  });

  test("calls that arrive while a VM is DELETING (the table's DELETING row)", async () => {
    const d = ctx.d;
    // The VMM hangs on vmm.shutdown and ignores SIGTERM: the deletion holds
    // the VM in DELETING until the stop escalation's SIGKILL (~3 s).
    const vm = await reach(d, "del-row", S.RUNNING, { directives: ["standin.hang_on=vmm.shutdown"] });
    const deleting = outcome(d.client.deleteVm({ vmId: "del-row" }));
    await waitFor(async () => (await d.info("del-row")).state === S.DELETING, 3000, "DELETING");
    // Sent together after the delete was accepted: each is refused for the
    // state at once, whatever order they arrive in.
    const ops = OPS.filter((op) => op !== "info");
    const [create, ...got] = await Promise.all([
      outcome(d.createVm("del-row").then((v) => ({ vm: v }))),
      ...ops.map((op) => outcome(call(d, op, "del-row"))),
    ]);
    const again = outcome(d.client.deleteVm({ vmId: "del-row" }));
    assert.equal(stateName((await d.info("del-row")).state), "DELETING", "answered while DELETING");
    ops.forEach((op, i) => {
      assert.equal(Code[got[i].code], Code[Code.FailedPrecondition], `${op}: ${got[i].message}`);
      assert.equal(got[i].message, "VM del-row is DELETING", op);
    });
    assert.equal(Code[create.code], Code[Code.Aborted], `CreateVm while deleting: ${create.message}`);
    assert.ok((await deleting).ok, "DeleteVm");
    assert.ok((await again).ok, "a second DeleteVm gets the same result");
    await expectCode(d.client.getVmInfo({ vmId: "del-row" }), Code.NotFound);
    assert.equal(fs.existsSync(`/proc/${vm.vmmPid}`), false, "the VMM is gone once DeleteVm answered");
  });

  test("ListVms filters, orders and pages", async () => {
    const d = ctx.d;
    const ids = [];
    for (let i = 11; i >= 0; i--) {
      const id = `list-${String(i).padStart(2, "0")}`;
      ids.unshift(id);
      await d.createVm(id, { labels: { parity: i % 2 ? "odd" : "even", group: "list" } });
    }
    await d.client.bootVm({ vmId: "list-03" });
    await d.client.bootVm({ vmId: "list-04" });
    const seen = [];
    let token = "";
    let pages = 0;
    do {
      const res = await d.client.listVms({ pageSize: 5, pageToken: token, labels: { group: "list" } });
      seen.push(...res.vms.map((v) => v.vmId));
      token = res.nextPageToken;
      pages++;
    } while (token && pages < 10);
    assert.deepEqual(seen, ids);
    assert.equal(pages, 3);
    const odd = await d.client.listVms({ labels: { parity: "odd", group: "list" } });
    assert.equal(odd.vms.length, 6);
    const running = await d.client.listVms({ states: [S.RUNNING] });
    assert.deepEqual(running.vms.map((v) => v.vmId), ["list-03", "list-04"]);
    const runningOdd = await d.client.listVms({ states: [S.RUNNING], labels: { parity: "odd" } });
    assert.deepEqual(runningOdd.vms.map((v) => v.vmId), ["list-03"]);
    await expectCode(d.client.listVms({ pageToken: "not a token!" }), Code.InvalidArgument, "page_token");
    await expectCode(d.client.listVms({ states: [99] }), Code.InvalidArgument, "states");
    for (const id of ids) await d.client.deleteVm({ vmId: id });
  });

  test("ShutdownVm: graceful via the power button, forced after the grace period", async () => {
    const d = ctx.d;
    await reach(d, "sd-1", S.RUNNING);
    let t0 = Date.now();
    let vm = (await d.client.shutdownVm({ vmId: "sd-1" })).vm;
    assert.equal(vm.state, S.SHUTDOWN);
    assert.ok(Date.now() - t0 < 3000, "the guest reacted to ACPI quickly");
    vm = (await d.client.bootVm({ vmId: "sd-1" })).vm;
    assert.equal(vm.state, S.RUNNING, "bootable again after shutdown");
    await reach(d, "sd-2", S.RUNNING, { directives: ["standin.ignore_power_button=1"] });
    t0 = Date.now();
    vm = (await d.client.shutdownVm({ vmId: "sd-2", gracefulTimeout: { nanos: 400_000_000 } })).vm;
    const took = Date.now() - t0;
    assert.equal(vm.state, S.SHUTDOWN);
    assert.ok(took >= 380, `waited the grace period (${took} ms)`);
    await expectCode(d.client.shutdownVm({ vmId: "sd-2", gracefulTimeout: { seconds: -1n } }), Code.InvalidArgument, "graceful_timeout");
    for (const id of ["sd-1", "sd-2"]) await d.client.deleteVm({ vmId: id });
  });
});

describe("daemon shutdown", () => {
  // Durable state (docs/durability.md): VMs outlive the daemon. SIGTERM
  // flushes the records and leaves every VMM running; the next start
  // re-adopts them without a change a client could see.
  test("SIGTERM with live VMs: exit 0, every VMM keeps running, a restart re-adopts them unchanged", async () => {
    const { Daemon } = await import("./lib/harness.mjs");
    const d = await new Daemon().start();
    try {
      await reach(d, "live-1", S.RUNNING);
      await reach(d, "live-2", S.PAUSED);
      await reach(d, "live-3", S.CREATED);
      const pids = d.vmmProcesses().map((p) => p.pid).sort();
      assert.equal(pids.length, 3);
      const before = (await d.client.listVms({ pageSize: 100 })).vms;
      d.proc.kill("SIGTERM");
      const { code } = await d.exited;
      assert.equal(code, 0);
      d.assertNoSanitizerReports();
      assert.deepEqual(d.vmmProcesses().map((p) => p.pid).sort(), pids);
      await d.start();
      const after = (await d.client.listVms({ pageSize: 100 })).vms;
      // Recovery asks each VMM for vm.info, so guest memory may now be known;
      // everything else (pid, state, reason, timestamps) is unchanged.
      const same = (vs) => vs.map((v) => ({ ...v, memoryActualSize: 0n }));
      assert.deepStrictEqual(same(after), same(before));
      for (const v of after) await d.client.deleteVm({ vmId: v.vmId });
      await d.assertClean();
    } finally {
      await d.stop().finally(() => d.cleanup());
    }
  });
});
