/**
 * System's supervision (and its memory limits) against stand-in services whose every start follows a
 * plan (serve; crash once asked for health; never get ready; get ready only
 * once another has exited), so the orderings a real service only sometimes
 * shows happen every time. The real services under supervision:
 * test/e2e/supervision.e2e.test.ts.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "../test/support/saga-system.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryCgroup } from "./memory-cgroup.js";
import { System, type SystemOptions } from "./system.js";

// A grpc.health.v1 server on PORT answering Check over HTTP/2 by hand. Each start takes the
// next step of FAKE_PLAN_<NAME> (its starts are counted in a file). FAKE_READY_AFTER_EXIT_OF
// waits for <name>.exited, which the test writes once System has seen that exit: a marker the
// exiting process wrote itself could be read before its parent learnt of the exit.
const fakeService = `
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http2";
import { join } from "node:path";
const name = process.env.FAKE_NAME;
const dir = process.env.FAKE_DIR;
const starts = join(dir, name + ".starts");
appendFileSync(starts, "x");
const plan = (process.env["FAKE_PLAN_" + name.toUpperCase()] ?? "serve").split(",");
const step = plan[Math.min(readFileSync(starts, "utf8").length, plan.length) - 1];
const awaited = process.env.FAKE_READY_AFTER_EXIT_OF;
const serving = () => step === "serve" || step === "crash-when-asked" || (step === "after-exit" && existsSync(join(dir, awaited + ".exited")));
const exit = () => process.exit(3);
createServer((request, response) => {
  response.writeHead(200, { "content-type": "application/grpc" });
  // HealthCheckResponse { status: SERVING (1) or NOT_SERVING (2) }, as one gRPC frame.
  response.write(Buffer.from([0, 0, 0, 0, 2, 8, serving() ? 1 : 2]));
  response.addTrailers({ "grpc-status": "0" });
  response.end();
  if (step === "crash-when-asked") setTimeout(exit, 100);
}).listen(Number(process.env.PORT), "127.0.0.1");
`;

let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "orderflow-supervision-"));
  for (const name of ["fraud", "payment"]) {
    mkdirSync(join(root, "dist", "services", name), { recursive: true });
    writeFileSync(join(root, "dist", "services", name, "main.js"), fakeService);
  }
});

afterEach(() => rmSync(root, { recursive: true, force: true }));

function system(services: string[], plans: Record<string, string>, options: Partial<SystemOptions> = {}): System {
  return new System({
    root,
    services,
    infra: { databaseUrl: "postgres://unused", natsUrl: "nats://unused", redisUrl: "redis://unused" },
    ports: "free",
    inheritEnv: false,
    output: () => undefined,
    readyTimeoutMs: 20_000,
    stopTimeoutMs: 2_000,
    env: { FAKE_DIR: root, ...Object.fromEntries(Object.entries(plans).map(([name, plan]) => [`FAKE_PLAN_${name.toUpperCase()}`, plan])) },
    serviceEnv: Object.fromEntries(services.map((name) => [name, { FAKE_NAME: name }])),
    ...options,
  });
}

function startsOf(name: string): number {
  return existsSync(join(root, `${name}.starts`)) ? readFileSync(join(root, `${name}.starts`), "utf8").length : 0;
}


describe("System's supervision", () => {
  it("fails the start when a service that was up exits while another is still starting, and restarts nothing", async () => {
    const restartsAsked: Array<number | undefined> = [];
    const sys = system(
      ["fraud", "payment"],
      { fraud: "crash-when-asked", payment: "after-exit" },
      {
        restart: { initialDelayMs: 50, maxDelayMs: 50, resetAfterMs: 60_000 },
        onUnexpectedExit: (service, _code, _signal, restartInMs) => {
          restartsAsked.push(restartInMs);
          writeFileSync(join(root, `${service}.exited`), "x");
        },
        serviceEnv: { fraud: { FAKE_NAME: "fraud" }, payment: { FAKE_NAME: "payment", FAKE_READY_AFTER_EXIT_OF: "fraud" } },
      },
    );
    try {
      await expect(sys.up()).rejects.toThrow("fraud exited with code 3 while the others were starting");
      expect(restartsAsked).toEqual([undefined]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(sys.services.map((s) => s.running)).toEqual([false, false]);
    } finally {
      await sys.stop();
    }
  }, 30_000);

  it("does not blame a restart on a process stopped and replaced while it was getting ready", async () => {
    const restarted: Array<Error | undefined> = [];
    const sys = system(["fraud"], { fraud: "crash-when-asked,never-ready,serve" }, { restart: { initialDelayMs: 50, maxDelayMs: 50, resetAfterMs: 60_000 }, onRestarted: (_service, error) => restarted.push(error) });
    try {
      await sys.up();
      const first = sys.info("fraud").pid;
      // The supervised restart's process, which never gets ready, once it has counted its start.
      await eventually(async () => {
        const { pid, running } = sys.info("fraud");
        return running && pid !== first && startsOf("fraud") === 2 ? pid : undefined;
      }, 15_000, "the supervised restart", 25);
      await sys.restart("fraud");
      // Long enough for the replaced process's readiness check to have given up (1 s timeout, 150 ms apart).
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(restarted).toEqual([]);
      expect(sys.info("fraud").running).toBe(true);
    } finally {
      await sys.stop();
    }
  }, 30_000);

  it("tries again when a restart's process cannot even be spawned", async () => {
    // The project's own node (node_modules/.bin/node) is what System runs; made unrunnable for a while.
    const node = join(root, "node_modules", ".bin", "node");
    mkdirSync(join(root, "node_modules", ".bin"), { recursive: true });
    writeFileSync(node, `#!/bin/sh\nexec "${process.execPath}" "$@"\n`);
    chmodSync(node, 0o755);
    const exits: Array<{ code: number | null; signal: string | null; restartInMs: number | undefined }> = [];
    const restarted: Array<Error | undefined> = [];
    const sys = system(
      ["fraud"],
      { fraud: "serve" },
      { restart: { initialDelayMs: 100, maxDelayMs: 100, resetAfterMs: 60_000 }, onUnexpectedExit: (_s, code, signal, restartInMs) => exits.push({ code, signal, restartInMs }), onRestarted: (_s, error) => restarted.push(error) },
    );
    try {
      await sys.up();
      chmodSync(node, 0o644);
      const { pid } = sys.info("fraud");
      if (pid === undefined) throw new Error("fraud has no pid");
      process.kill(pid, "SIGKILL");
      await eventually(async () => (exits.length >= 2 ? true : undefined), 15_000, "a failed spawn", 25);
      chmodSync(node, 0o755);
      await eventually(async () => (restarted.length > 0 ? true : undefined), 15_000, "the restart", 25);
      expect(exits.slice(0, 2)).toEqual([
        { code: null, signal: "SIGKILL", restartInMs: 100 },
        { code: null, signal: null, restartInMs: 100 },
      ]);
      expect(restarted).toEqual([undefined]);
      expect(sys.info("fraud").running).toBe(true);
    } finally {
      await sys.stop();
    }
  }, 30_000);

  it("restarts a service that crashes again and again, each time after the policy's wait", async () => {
    const waits: Array<number | undefined> = [];
    const restarted: Array<Error | undefined> = [];
    const sys = system(
      ["fraud"],
      { fraud: "serve,crash-when-asked,crash-when-asked,serve" },
      { restart: { initialDelayMs: 50, maxDelayMs: 150, resetAfterMs: 60_000 }, onUnexpectedExit: (_s, _c, _sig, restartInMs) => waits.push(restartInMs), onRestarted: (_service, error) => restarted.push(error) },
    );
    try {
      await sys.up();
      const { pid } = sys.info("fraud");
      if (pid === undefined) throw new Error("fraud has no pid");
      process.kill(pid, "SIGKILL");
      await eventually(async () => (restarted.length >= 3 ? true : undefined), 15_000, "three restarts", 25);
      expect(waits).toEqual([50, 100, 150]);
      expect(restarted).toEqual([undefined, undefined, undefined]);
      await sys.waitHealthy("fraud");
    } finally {
      await sys.stop();
    }
  }, 30_000);
});

// Where this machine lets the test make memory cgroups (root on Linux).
const cgroupsPermitted = MemoryCgroup.permitted();

describe("System's memory limits", () => {
  it.skipIf(!cgroupsPermitted)("runs each limited service and replica in a cgroup of its own from its start, and removes them at stop", async () => {
    const sys = system(["fraud", "payment"], {}, { memoryLimitsMb: { fraud: 256 } });
    const cgroupOf = (name: string): string => readFileSync(`/proc/${sys.info(name).pid ?? 0}/cgroup`, "utf8");
    const dirs: string[] = [];
    try {
      await sys.up();
      const replica = await sys.addReplica("fraud");
      expect(cgroupOf("fraud")).toContain(`/orderflow-fraud-${process.pid}\n`);
      expect(cgroupOf(replica)).toContain(`/orderflow-fraud-2-${process.pid}\n`);
      expect(cgroupOf("payment")).not.toContain("orderflow-");
      for (const name of ["fraud", replica]) {
        const usage = sys.memoryCgroupUsage(name);
        expect(usage?.limitMb).toBe(256);
        expect(usage?.peakMb).toBeGreaterThan(10);
        expect(usage?.oomKills).toBe(0);
        dirs.push(/^\d+:[^:]*memory[^:]*:(.*)$|^0::(.*)$/m.exec(cgroupOf(name))?.slice(1).find((path) => path !== undefined) ?? "");
      }
      expect(sys.memoryCgroupUsage("payment")).toBeUndefined();
    } finally {
      await sys.stop();
    }
    for (const dir of dirs) expect(existsSync(join("/sys/fs/cgroup", dir)) || existsSync(join("/sys/fs/cgroup/memory", dir))).toBe(false);
  }, 30_000);

  it.skipIf(!cgroupsPermitted)("removes at any start the cgroups a killed run left behind, its own limits or none", async () => {
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
    const leftover = MemoryCgroup.create(`orderflow-fraud-${deadPid}`, 64 * 2 ** 20);
    const sys = system(["payment"], {});
    try {
      expect(existsSync(leftover.dir)).toBe(true);
      await sys.up();
      expect(existsSync(leftover.dir)).toBe(false);
    } finally {
      await sys.stop();
      leftover.remove();
    }
  }, 30_000);
});
