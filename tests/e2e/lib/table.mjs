// table.mjs - the state x operation table of docs/lifecycle.md, shared by
// the stand-in suite (lifecycle.test.mjs) and the real-CH suite.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { Code, VmState, expectCode, stateName } from "./harness.mjs";
import { outcome, reach } from "./states.mjs";

const S = VmState;
export const OK = "ok";
const FP = Code.FailedPrecondition;

// rows: start state; columns: operation -> [expected outcome, state after]
export const OPS = ["boot", "pause", "resume", "reboot", "shutdown", "info"];
export const TABLE = {
  [S.CREATED]: { boot: [OK, S.RUNNING], pause: [FP], resume: [FP], reboot: [FP], shutdown: [OK, S.CREATED], info: [OK] },
  [S.RUNNING]: { boot: [OK], pause: [OK, S.PAUSED], resume: [OK], reboot: [OK, S.RUNNING], shutdown: [OK, S.SHUTDOWN], info: [OK] },
  [S.PAUSED]: { boot: [FP], pause: [OK], resume: [OK, S.RUNNING], reboot: [OK, S.RUNNING], shutdown: [OK, S.SHUTDOWN], info: [OK] },
  [S.SHUTDOWN]: { boot: [OK, S.RUNNING], pause: [FP], resume: [FP], reboot: [FP], shutdown: [OK], info: [OK] },
  [S.FAILED]: { boot: [FP], pause: [FP], resume: [FP], reboot: [FP], shutdown: [FP], info: [OK] },
  [S.CRASHED]: { boot: [FP], pause: [FP], resume: [FP], reboot: [FP], shutdown: [FP], info: [OK] },
};

export function call(d, op, vmId) {
  const c = d.client;
  switch (op) {
    case "boot":
      return c.bootVm({ vmId });
    case "pause":
      return c.pauseVm({ vmId });
    case "resume":
      return c.resumeVm({ vmId });
    case "reboot":
      return c.rebootVm({ vmId });
    case "shutdown":
      return c.shutdownVm({ vmId, gracefulTimeout: { seconds: 5n } });
    case "info":
      return c.getVmInfo({ vmId });
  }
  throw new Error(op);
}


/**
 * One row: for every operation, a fresh VM in state `from`, the call, the
 * outcome and state it must give, then DeleteVm (which must work from every
 * state and remove everything). `directives` are stand-in faults for every
 * VM of the row (e.g. late events).
 */
export async function runRow(d, from, row = TABLE[from], { directives = [] } = {}) {
  for (const op of OPS) {
    const id = `t-${stateName(from).toLowerCase().replace("_", "")}-${op}`;
    await reach(d, id, from, { directives });
    const [want, after = from] = row[op];
    const got = await outcome(call(d, op, id));
    if (want === OK) {
      assert.ok(got.ok, `${op} in ${stateName(from)}: ${got.message}`);
      assert.equal(stateName(got.vm.state), stateName(after), `${op} in ${stateName(from)}`);
      assert.equal(got.vm.vmId, id);
    } else {
      assert.equal(got.ok, false, `${op} in ${stateName(from)} should fail`);
      assert.equal(Code[got.code], Code[want], `${op} in ${stateName(from)}: ${got.message}`);
      assert.match(got.message, new RegExp(stateName(from)), "the error names the state");
    }
    const now = await d.info(id);
    assert.equal(stateName(now.state), stateName(after));
    const del = await d.client.deleteVm({ vmId: id });
    assert.equal(del.vmId, id);
    await expectCode(d.client.getVmInfo({ vmId: id }), Code.NotFound);
    assert.equal(fs.existsSync(d.vmDir(id)), false, "VM directory removed");
  }
}
