// validation.test.mjs - bad input gets a precise error naming the field and
// never starts anything: invalid ids and labels, missing or contradictory
// payloads, absurd sizes, paths outside the image directories (also through
// a symlink), chcp-owned host paths chosen by the client, and a daemon with no
// image directories at all.
import assert from "node:assert/strict";
import * as path from "node:path";
import { describe, test } from "node:test";
import { Code, Daemon, expectCode, useDaemon } from "./lib/harness.mjs";

describe("input validation", () => {
  const ctx = useDaemon();

  test("invalid vm_ids", async () => {
    const d = ctx.d;
    const bad = ["-x", "Upper", "a_b", "../x", "a/b", "a.b", "x".repeat(64), "sp ace", "é"];
    for (const id of bad) {
      await expectCode(d.client.createVm({ vmId: id, config: d.config() }), Code.InvalidArgument, "vm_id");
      await expectCode(d.client.bootVm({ vmId: id }), Code.InvalidArgument, "vm_id");
      await expectCode(d.client.deleteVm({ vmId: id }), Code.InvalidArgument, "vm_id");
    }
    await expectCode(d.client.getVmInfo({ vmId: "" }), Code.InvalidArgument, "vm_id");
  });

  test("invalid labels", async () => {
    const d = ctx.d;
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    await expectCode(d.client.createVm({ vmId: "l1", config: d.config(), labels: many }), Code.InvalidArgument, "labels");
    await expectCode(d.client.createVm({ vmId: "l1", config: d.config(), labels: { ["k".repeat(64)]: "v" } }), Code.InvalidArgument, "labels");
    await expectCode(d.client.createVm({ vmId: "l1", config: d.config(), labels: { k: "v".repeat(256) } }), Code.InvalidArgument, "labels");
    await expectCode(d.client.createVm({ vmId: "l1", config: d.config(), labels: { "a\nb": "v" } }), Code.InvalidArgument, "labels");
  });

  test("bad configurations name the field", async () => {
    const d = ctx.d;
    const cases = [
      [{ vmId: "c1" }, Code.InvalidArgument, "config"],
      [{ vmId: "c1", config: { cpus: { bootVcpus: 1 } } }, Code.InvalidArgument, "config.payload"],
      [{ vmId: "c1", config: d.config({ payload: { kernel: d.kernel, firmware: d.firmware } }) }, Code.InvalidArgument, "mutually exclusive"],
      [{ vmId: "c1", config: d.config({ payload: { kernel: "" } }) }, Code.InvalidArgument, "config.payload"],
      [{ vmId: "c1", config: d.config({ memory: { size: 0n } }) }, Code.InvalidArgument, "config.memory.size"],
      [{ vmId: "c1", config: d.config({ memory: { size: 1000n } }) }, Code.InvalidArgument, "config.memory.size"],
      [{ vmId: "c1", config: d.config({ memory: { size: 1n << 62n } }) }, Code.InvalidArgument, "CHCP_MAX_MEMORY_MIB"],
      [{ vmId: "c1", config: d.config({ memory: { size: 18446744073709547520n } }) }, Code.InvalidArgument, "config.memory"],
      [{ vmId: "c1", config: d.config({ cpus: { bootVcpus: 0 } }) }, Code.InvalidArgument, "config.cpus.boot_vcpus"],
      [{ vmId: "c1", config: d.config({ cpus: { bootVcpus: 4, maxVcpus: 2 } }) }, Code.InvalidArgument, "config.cpus.max_vcpus"],
      [{ vmId: "c1", config: d.config({ cpus: { bootVcpus: 4294967295 } }) }, Code.InvalidArgument, "CHCP_MAX_VCPUS"],
      [{ vmId: "c1", config: d.config({ payload: { kernel: "/etc/passwd" } }) }, Code.PermissionDenied, "config.payload.kernel"],
      [{ vmId: "c1", config: d.config({ payload: { kernel: path.join(d.imageDir, "escape") } }) }, Code.PermissionDenied, "outside the image directories"],
      [{ vmId: "c1", config: d.config({ payload: { kernel: d.imageDir + "/../../../etc/passwd" } }) }, Code.InvalidArgument, "config.payload.kernel"],
      [{ vmId: "c1", config: d.config({ payload: { kernel: path.join(d.imageDir, "missing") } }) }, Code.InvalidArgument, "config.payload.kernel"],
      [{ vmId: "c1", config: d.config({ payload: { kernel: d.kernel, initramfs: "/boot/initrd.img" } }) }, Code.PermissionDenied, "config.payload.initramfs"],
      [{ vmId: "c1", config: d.config({ disks: [{ path: "/dev/sda" }] }) }, Code.PermissionDenied, "config.disks[0].path"],
      [{ vmId: "c1", config: d.config({ disks: [{ path: d.disk, queueSize: 3 }] }) }, Code.InvalidArgument, "config.disks[0].queue_size"],
      [{ vmId: "c1", config: d.config({ console: { mode: 4, file: "/tmp/console" } }) }, Code.InvalidArgument, "config.console"],
      [{ vmId: "c1", config: d.config({ serial: { mode: 5, socket: "/tmp/s.sock" } }) }, Code.InvalidArgument, "config.serial"],
      [{ vmId: "c1", config: d.config({ vsock: { cid: 3n, socket: "/tmp/v.sock" } }) }, Code.InvalidArgument, "config.vsock.socket"],
      [{ vmId: "c1", config: d.config({ vsock: { cid: 2n } }) }, Code.InvalidArgument, "config.vsock.cid"],
      [{ vmId: "c1", config: d.config({ rng: { src: "/etc/shadow" } }) }, Code.InvalidArgument, "config.rng.src"],
      [{ vmId: "c1", config: d.config({ net: [{ mac: "zz" }] }) }, Code.InvalidArgument, "config.net[0]"],
      [{ vmId: "c1", config: d.config({ disks: Array.from({ length: 33 }, () => ({ path: d.disk })) }) }, Code.InvalidArgument, "config.disks"],
    ];
    for (const [req, code, field] of cases) await expectCode(d.client.createVm(req), code, field);
    assert.equal(d.vmmProcesses().length, 0, "nothing was started");
  });

  test("a valid config with every section is accepted", async () => {
    const d = ctx.d;
    const vm = (
      await d.client.createVm({
        vmId: "full-1",
        config: d.config({
          cpus: { bootVcpus: 2, maxVcpus: 4, topology: { threadsPerCore: 1, coresPerDie: 2, diesPerPackage: 1, packages: 2 } },
          memory: { size: 256n << 20n, hotplugSize: 256n << 20n, thp: false },
          disks: [{ path: d.disk, readonly: true, id: "root", serial: "disk0", imageType: 1 }],
          console: { mode: 4 },
          serial: { mode: 5 },
          vsock: { cid: 3n },
          rng: { src: "/dev/urandom" },
          platform: { uuid: "12345678-1234-1234-1234-123456789abc", oemStrings: ["a", "b"] },
        }),
      })
    ).vm;
    assert.equal(vm.config.cpus.maxVcpus, 4);
    assert.equal(vm.config.disks[0].path, d.disk);
    assert.equal((await d.client.bootVm({ vmId: "full-1" })).vm.state, 4);
    await d.client.deleteVm({ vmId: "full-1" });
  });
});

describe("no image directories configured", () => {
  test("every client path is refused", async () => {
    const d = await new Daemon({ images: false }).start();
    try {
      await expectCode(d.createVm("x"), Code.PermissionDenied, "CHCP_IMAGE_DIRS");
      await d.assertClean();
    } finally {
      await d.stop().finally(() => d.cleanup());
    }
  });
});
