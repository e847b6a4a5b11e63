// harness.mjs - the end-to-end test rig: a real chcp-api process, a real
// Connect client (connect-es v2, code generated from proto/ by `buf
// generate`), temporary state and image directories, and the leak checks run
// after every test (no VMM process, socket or directory may survive).
//
// Environment: CHCP_BIN (daemon, default build/asan/chcp-api), CHCP_STANDIN
// (CH stand-in, default build/asan/ch-standin/cloud-hypervisor),
// CHCP_TEST_REAL_CH (a real cloud-hypervisor, used by real-ch.test.mjs).
import { spawn } from "node:child_process";
import { after, afterEach, before } from "node:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as pb from "../gen/cloudhypervisor/v1/vm_pb.js";

export { pb, Code, ConnectError, sleep };
export const VmState = pb.VmState;

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, "..", "..", "..");

function repoPath(envName, def) {
  const p = process.env[envName] || def;
  return path.isAbsolute(p) ? p : path.join(REPO, p);
}

export const CHCP_BIN = repoPath("CHCP_BIN", "build/asan/chcp-api");
export const STANDIN = repoPath("CHCP_STANDIN", "build/asan/ch-standin/cloud-hypervisor");

const SANITIZER_MARKERS = [
  "ERROR: AddressSanitizer",
  "ERROR: LeakSanitizer",
  "runtime error:",
  "UndefinedBehaviorSanitizer",
];

/** Every process whose command line mentions `needle` (our temp root). */
export function processesMentioning(needle) {
  const out = [];
  for (const pid of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmd.includes(needle)) out.push({ pid: Number(pid), cmd: cmd.split("\0").join(" ") });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** Poll `fn` until it returns a truthy value or `ms` pass. */
export async function waitFor(fn, ms = 5000, what = "condition") {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(20);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/**
 * One daemon with its own temp root:
 *   <root>/state   CHCP_STATE_DIR
 *   <root>/images  CHCP_IMAGE_DIRS (vmlinux, fw.bin, disk.img, an escaping symlink)
 */
export class Daemon {
  constructor({ env = {}, chBinary = STANDIN, images = true, memory = 64n << 20n } = {}) {
    this.memory = memory;
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), "chcp-e2e-"));
    this.stateDir = path.join(this.root, "state");
    this.imageDir = path.join(this.root, "images");
    this.logPath = path.join(this.root, "daemon.log");
    fs.mkdirSync(this.imageDir);
    fs.writeFileSync(path.join(this.imageDir, "vmlinux"), "\x7fELF fake kernel");
    fs.writeFileSync(path.join(this.imageDir, "fw.bin"), "fake firmware");
    fs.writeFileSync(path.join(this.imageDir, "disk.img"), Buffer.alloc(1 << 20));
    fs.symlinkSync("/etc/passwd", path.join(this.imageDir, "escape"));
    this.kernel = path.join(this.imageDir, "vmlinux");
    this.firmware = path.join(this.imageDir, "fw.bin");
    this.disk = path.join(this.imageDir, "disk.img");
    this.env = {
      PATH: process.env.PATH || "/usr/bin:/bin",
      ASAN_OPTIONS: process.env.ASAN_OPTIONS || "detect_leaks=1:abort_on_error=1",
      UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || "print_stacktrace=1:halt_on_error=1",
      CHCP_ADDRESS: "127.0.0.1",
      CHCP_PORT: "0",
      CHCP_STATE_DIR: this.stateDir,
      CHCP_IMAGE_DIRS: images ? this.imageDir : "",
      CHCP_CH_BINARY: chBinary,
      CHCP_MAX_VCPUS: "8",
      CHCP_MAX_MEMORY_MIB: "4096",
      CHCP_MAX_CONCURRENT_STARTS: "256",
      CHCP_LOG_LEVEL: "info",
      ...env,
    };
    for (const [k, v] of Object.entries(this.env)) if (v === undefined) delete this.env[k];
  }

  async start() {
    const log = fs.openSync(this.logPath, "w");
    this.proc = spawn(CHCP_BIN, [], { env: this.env, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    this.exited = new Promise((resolve) => this.proc.on("exit", (code, sig) => resolve({ code, sig })));
    this.port = await waitFor(
      () => {
        if (this.proc.exitCode !== null) throw new Error("chcp-api exited during start:\n" + this.output());
        for (const rec of this.logRecords())
          if (typeof rec.msg === "string" && rec.msg.endsWith(" listening") && rec.port) return Number(rec.port);
        return null;
      },
      20000,
      "the daemon's listening line",
    );
    this.baseUrl = `http://127.0.0.1:${this.port}`;
    this.client = this.makeClient("1.1");
    return this;
  }

  makeClient(httpVersion = "1.1") {
    const transport = createConnectTransport({ baseUrl: this.baseUrl, httpVersion });
    return createClient(pb.VmService, transport);
  }

  output() {
    try {
      return fs.readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  logRecords() {
    const recs = [];
    for (const line of this.output().split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        recs.push(JSON.parse(line));
      } catch {
        /* partial line */
      }
    }
    return recs;
  }

  vmsDir() {
    return path.join(this.stateDir, "vms");
  }

  vmDir(id) {
    return path.join(this.vmsDir(), id);
  }

  /** VMM processes started for this daemon (their args name our temp root). */
  vmmProcesses() {
    return processesMentioning(this.root).filter((p) => p.pid !== this.proc?.pid);
  }

  /** The leak check run after every test: nothing of any VM may remain. */
  async assertClean() {
    const list = await this.client.listVms({ pageSize: 1000 });
    if (list.vms.length)
      throw new Error("VMs left: " + list.vms.map((v) => `${v.vmId}(${VmState[v.state]})`).join(", "));
    await waitFor(() => this.vmmProcesses().length === 0, 5000, "no VMM processes").catch(() => {
      throw new Error("VMM processes left:\n" + this.vmmProcesses().map((p) => p.cmd).join("\n"));
    });
    const left = fs.existsSync(this.vmsDir()) ? fs.readdirSync(this.vmsDir()) : [];
    if (left.length) throw new Error("VM directories left: " + left.join(", "));
    this.assertNoSanitizerReports();
  }

  assertNoSanitizerReports() {
    const out = this.output();
    for (const m of SANITIZER_MARKERS)
      if (out.includes(m)) throw new Error("sanitizer report in daemon output:\n" + out.slice(-8000));
  }

  /** SIGTERM; the daemon must exit 0, stop every VMM and leave nothing. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 30000);
    const { code, sig } = await this.exited;
    clearTimeout(t);
    this.assertNoSanitizerReports();
    if (code !== 0) throw new Error(`chcp-api exited ${code ?? sig} after SIGTERM:\n` + this.output().slice(-8000));
    await waitFor(() => this.vmmProcesses().length === 0, 5000, "VMMs gone after daemon exit");
  }

  cleanup() {
    for (const p of this.vmmProcesses()) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    if (this.proc && this.proc.exitCode === null) this.proc.kill("SIGKILL");
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  // ---- request helpers ------------------------------------------------------

  config(overrides = {}) {
    return {
      payload: { kernel: this.kernel, cmdline: "console=hvc0", ...(overrides.payload || {}) },
      cpus: { bootVcpus: 1, ...(overrides.cpus || {}) },
      memory: { size: this.memory, ...(overrides.memory || {}) },
      ...Object.fromEntries(Object.entries(overrides).filter(([k]) => !["payload", "cpus", "memory"].includes(k))),
    };
  }

  /** CreateVm with fault directives for the stand-in in the cmdline. */
  async createVm(vmId, { directives = [], labels = {}, config = {} } = {}) {
    const c = this.config(config);
    if (directives.length) c.payload.cmdline = [c.payload.cmdline, ...directives].join(" ");
    const res = await this.client.createVm({ vmId, config: c, labels });
    return res.vm;
  }

  async info(vmId) {
    return (await this.client.getVmInfo({ vmId })).vm;
  }

  async deleteAll() {
    const list = await this.client.listVms({ pageSize: 1000 });
    await Promise.all(list.vms.map((v) => this.client.deleteVm({ vmId: v.vmId }).catch(() => {})));
  }
}

/** Expect a ConnectError with `code`; returns it. */
export async function expectCode(promise, code, messagePart) {
  try {
    await promise;
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code !== code)
      throw new Error(`expected ${Code[code]}, got ${Code[err.code]}: ${err.rawMessage}`);
    if (messagePart && !err.rawMessage.includes(messagePart))
      throw new Error(`expected message containing ${JSON.stringify(messagePart)}, got ${JSON.stringify(err.rawMessage)}`);
    return err;
  }
  throw new Error(`expected ${Code[code]}, but the call succeeded`);
}

export function stateName(s) {
  return VmState[s];
}

/**
 * One daemon for a test file, with the leak check after every test: the test
 * must have deleted its VMs, and nothing of them may remain. (On failure the
 * leftovers are deleted so one failure does not cascade.)
 */
export function useDaemon(opts = {}) {
  const ctx = {};
  before(async () => {
    ctx.d = await new Daemon(opts).start();
  });
  afterEach(async () => {
    if (!ctx.d) return;
    try {
      await ctx.d.assertClean();
    } catch (e) {
      await ctx.d.deleteAll().catch(() => {});
      throw e;
    }
  });
  after(async () => {
    if (!ctx.d) return;
    try {
      await ctx.d.stop();
    } finally {
      ctx.d.cleanup();
    }
  });
  return ctx;
}
