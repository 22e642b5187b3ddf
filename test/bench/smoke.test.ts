// Keeps `npm run bench` from rotting: runs it with --smoke (a few seconds of tiny
// load against its own copy of the system) into a temporary folder and checks
// only that it produced complete, well-formed results — never the figures — and that
// `npm run bench:report` gives them back as the run printed and drew them.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type BenchResult, checkResult } from "../../bench/results.js";
import { servicesAllocator } from "../../tools/allocator.js";
import { chartMemoryLimitsMb } from "../../bench/pod-memory.js";
import { MemoryCgroup } from "../../tools/memory-cgroup.js";
import { serviceNodeFlags } from "../../tools/node-flags.js";
import { repoRoot } from "../../tools/system.js";
import { sharedInfra } from "../support/system.js";

const root = repoRoot();
const outDir = mkdtempSync(join(tmpdir(), "orderflow-bench-smoke-"));
// --pod-memory where this machine lets the bench make memory cgroups (root on Linux).
const podMemory = MemoryCgroup.permitted();

afterAll(() => rmSync(outDir, { recursive: true, force: true }));

function runCompiled(program: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, "dist", "bench", program), ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("exit", (code) => resolve({ code, output }));
  });
}

describe("npm run bench -- --smoke", () => {
  it("produces complete, well-formed results", { timeout: 240_000 }, async () => {
    const infra = sharedInfra();
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: infra.databaseUrl, REDIS_URL: infra.redisUrl, NATS_URL: infra.natsUrl };
    delete env["NODE_OPTIONS"];
    const { code, output } = await runCompiled("main.js", ["--smoke", "--out", outDir, ...(podMemory ? ["--pod-memory"] : [])], env);
    if (code !== 0) process.stderr.write(`---- bench output ----\n${output}\n---- end ----\n`);
    expect(code).toBe(0);

    const latest = join(outDir, "latest.json");
    expect(existsSync(latest)).toBe(true);
    const result = JSON.parse(readFileSync(latest, "utf8")) as BenchResult;
    expect(checkResult(result)).toEqual([]);
    expect(result.mode).toBe("smoke");
    expect(result.saga.steps.length).toBeGreaterThan(0);
    for (const step of result.saga.steps) {
      expect(step.scheduled).toBeGreaterThan(0);
      // The per-second series holds every end-to-end sample of the step, once.
      expect(step.e2eBySecond.reduce((total, second) => total + second.count, 0)).toBe(step.e2eLatency.count);
      // Every stage of the saga was sampled, whether or not work waited there.
      expect(step.queues.map((q) => q.consumer)).toEqual(expect.arrayContaining(["fraud-commands", "order-fraud-events", "notification-order-events"]));
      // The saga's messages and writes were counted.
      expect(step.work.jetstreamMessages).toBeGreaterThan(0);
      expect(step.work.postgresWrites).toBeGreaterThan(0);
      expect(step.cpuMsPerSaga?.["machine"]).toBeGreaterThan(0);
      expect(step.cpuMsPerSaga?.["order"]).toBeGreaterThan(0);
      expect(step.wakeUpsPerSaga?.["order"]).toBeGreaterThan(0);
      expect(step.wakeUpsPerSaga?.["machine"]).toBeGreaterThan(0);
    }
    expect(result.ceilings.grpcJs.requests).toBeGreaterThan(0);
    expect(result.ceilings.postgres.transactions).toBeGreaterThan(0);
    expect(result.ceilings.jetstream.roundTripMsgsPerSec).toBeGreaterThan(0);
    expect(result.transport.map((t) => `${t.name}/${t.protocol}`).sort()).toEqual(
      ["Health/Check bare connect-node/connect", "Health/Check bare connect-node/grpc", "Health/Check order service/connect", "Health/Check order service/grpc"].sort(),
    );
    expect(result.ratios.length).toBeGreaterThan(0);
    // Each of the goal's figures, judged or not (a smoke run's steps are far below its rates).
    expect(result.goals.map((g) => g.goal)).toEqual(["sagas completed a second", "end-to-end p99 at 850/s", "CreateOrder (gRPC) vs a bare grpc-js server", "cached GetOrder (gRPC) vs a bare grpc-js server"]);
    for (const goal of result.goals) expect([true, false, null]).toContain(goal.met);
    expect(result.resources.map((r) => r.name)).toEqual(expect.arrayContaining(["order", "inventory", "payment", "fraud"]));
    expect(result.machine.cores).toBeGreaterThan(0);
    // Each service runs on the allocator npm start gives it where this host has one (tools/allocator.ts), as read from its process.
    const services = result.resources.filter((r) => r.name !== "bench-generator").map((r) => r.name);
    const allocator = servicesAllocator(env).env["LD_PRELOAD"] === undefined ? "system malloc" : "jemalloc";
    expect(result.machine.servicesAllocator).toEqual(Object.fromEntries(services.map((name) => [name, allocator])));
    expect(output).toContain(`services on ${allocator}`);
    // ... and with the node flags the image and the chart give it (tools/node-flags.ts), as read from its command line.
    expect(result.machine.servicesNodeFlags).toEqual(Object.fromEntries(services.map((name) => [name, serviceNodeFlags])));
    expect(output).toContain(`node flags ${serviceNodeFlags.join(" ")}`);
    // With --pod-memory, each service ran in a cgroup at its pod's limit and was charged under it.
    const limits = chartMemoryLimitsMb(root);
    for (const r of result.resources.filter((footprint) => footprint.name !== "bench-generator")) {
      if (!podMemory) {
        expect(r.memoryCgroup).toBeUndefined();
      } else {
        expect(r.memoryCgroup).toMatchObject({ limitMb: limits[r.name], oomKills: 0 });
        expect(r.memoryCgroup?.peakMb).toBeGreaterThan(0);
      }
    }
    if (podMemory) expect(output).toContain("Each service in a memory cgroup at its pod's limit");

    // A dated copy beside latest.json, the plot, and the terminal table.
    expect(existsSync(join(outDir, `${result.machine.date.slice(0, 10)}-${result.machine.gitCommit}-smoke.json`))).toBe(true);
    expect(readFileSync(join(outDir, "latency-vs-load.svg"), "utf8")).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"[\s\S]*<\/svg>\n$/);
    expect(output).toContain("Saga (open loop");
    expect(output).toContain("Ceilings");
    expect(output).toContain("The goal, on this machine in this run");
    expect(output).toContain("CPU per concluded saga");
    expect(output).toContain("end-to-end p99 second by second");

    // `npm run bench:report` gives a kept result's report and plot as the run made them.
    const replotted = join(outDir, "replotted.svg");
    const report = await runCompiled("report-cli.js", [latest, replotted], env);
    expect(report.code).toBe(0);
    expect(report.output).toContain("The goal, on this machine in this run");
    expect(output).toContain(report.output);
    expect(readFileSync(replotted, "utf8")).toBe(readFileSync(join(outDir, "latency-vs-load.svg"), "utf8"));
  });
});
