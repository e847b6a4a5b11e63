// attach.test.mjs - attach mode (CHCP_CH_ENDPOINT): chcp drives one
// pre-started VMM, spawns nothing, hosts exactly one VM, and DeleteVm sends
// vm.delete without stopping the VMM process.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { Code, Daemon, STANDIN, VmState, expectCode, waitFor } from "./lib/harness.mjs";

describe("attach mode", () => {
  test("one VM on a pre-started VMM; DeleteVm leaves the process running", async () => {
    const dir = fs.mkdtempSync("/tmp/chcp-e2e-attach-");
    const sock = path.join(dir, "ch.sock");
    const log = fs.openSync(path.join(dir, "ch.log"), "w");
    const ch = spawn(STANDIN, ["--api-socket", `path=${sock}`], { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    let d;
    try {
      await waitFor(() => fs.existsSync(sock), 5000, "the VMM's API socket");
      d = await new Daemon({ env: { CHCP_CH_ENDPOINT: `unix://${sock}` } }).start();
      const vm = await d.createVm("att-1");
      assert.equal(vm.state, VmState.CREATED);
      assert.equal(d.vmmProcesses().length, 0, "nothing spawned");
      await expectCode(d.createVm("att-2"), Code.ResourceExhausted, "attach mode");
      assert.equal((await d.client.bootVm({ vmId: "att-1" })).vm.state, VmState.RUNNING);
      assert.equal((await d.client.pauseVm({ vmId: "att-1" })).vm.state, VmState.PAUSED);
      assert.equal((await d.client.shutdownVm({ vmId: "att-1" })).vm.state, VmState.SHUTDOWN);
      await d.client.deleteVm({ vmId: "att-1" });
      assert.equal(ch.exitCode, null, "the VMM process keeps running");
      // the VMM took vm.delete: a new VM can be created on it
      const again = await d.createVm("att-2");
      assert.equal(again.state, VmState.CREATED);
      await d.client.deleteVm({ vmId: "att-2" });
      await d.assertClean();
      assert.equal(ch.exitCode, null);
    } finally {
      if (d) await d.stop().finally(() => d.cleanup());
      ch.kill("SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
