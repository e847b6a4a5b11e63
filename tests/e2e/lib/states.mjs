// states.mjs - bring a VM into a given state through the API (and the
// stand-in's fault directives where no API call leads there).
import { Code, ConnectError, VmState, expectCode, waitFor } from "./harness.mjs";

/** Create `id` and drive it into `state`; returns the VmInfo. */
export async function reach(d, id, state, { directives = [] } = {}) {
  const c = d.client;
  switch (state) {
    case VmState.CREATED:
      return d.createVm(id, { directives });
    case VmState.RUNNING:
      await d.createVm(id, { directives });
      return (await c.bootVm({ vmId: id })).vm;
    case VmState.PAUSED:
      await reach(d, id, VmState.RUNNING, { directives });
      return (await c.pauseVm({ vmId: id })).vm;
    case VmState.SHUTDOWN:
      await reach(d, id, VmState.RUNNING, { directives });
      return (await c.shutdownVm({ vmId: id, force: true })).vm;
    case VmState.FAILED: {
      // vm.boot fails after CH kept a Vm object: chcp cannot go back.
      await d.createVm(id, { directives: ["standin.fail_boot=late", ...directives] });
      await expectCode(c.bootVm({ vmId: id }), Code.Internal);
      return d.info(id);
    }
    case VmState.CRASHED: {
      const vm = await reach(d, id, VmState.RUNNING, { directives });
      process.kill(vm.vmmPid, "SIGKILL");
      return waitFor(
        async () => {
          const v = await d.info(id);
          return v.state === VmState.CRASHED ? v : null;
        },
        2000,
        `${id} CRASHED`,
      );
    }
    default:
      throw new Error("cannot reach state " + VmState[state]);
  }
}

/** Run one call, returning {ok, vm} or {ok:false, code, message}. */
export async function outcome(promise) {
  try {
    const res = await promise;
    return { ok: true, vm: res.vm };
  } catch (e) {
    const err = ConnectError.from(e);
    return { ok: false, code: err.code, message: err.rawMessage };
  }
}
