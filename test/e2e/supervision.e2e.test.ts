/**
 * npm start's supervision (tools/system.ts with a restart policy) with a real
 * service: killed from outside, it comes back and answers SERVING, each crash in
 * a row waits twice as long, and a system being stopped starts nothing again.
 * The orderings real services show only sometimes: tools/supervision.test.ts.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { startPrivate } from "../../tools/infra.js";
import { serviceNodeFlags } from "../../tools/node-flags.js";
import { repoRoot } from "../../tools/system.js";
import { eventually } from "../support/saga-system.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sharedInfra, startTestSystem, type TestSystem } from "../support/system.js";

/** A node flag beyond the services' own, which a restarted service must keep. */
const extraFlag = "--stack-trace-limit=30";
const policy = { initialDelayMs: 200, maxDelayMs: 1_000, resetAfterMs: 60_000 };
const crashes: Array<{ service: string; signal: string | null; restartInMs: number | undefined }> = [];
const restarts: Array<{ service: string; error: Error | undefined }> = [];
let sys: TestSystem;

beforeAll(async () => {
  sys = await startTestSystem({
    services: ["fraud"],
    nodeFlags: [extraFlag],
    supervision: {
      restart: policy,
      onUnexpectedExit: (service, _code, signal, restartInMs) => crashes.push({ service, signal, restartInMs }),
      onRestarted: (service, error) => restarts.push({ service, error }),
    },
  });
}, 120_000);

afterAll(() => sys?.stop());


function killFromOutside(): number {
  const { pid } = sys.system.info("fraud");
  if (pid === undefined) throw new Error("fraud has no process");
  process.kill(pid, "SIGKILL");
  return pid;
}

describe("a supervised system", () => {
  it("starts a killed service again with the same node flags, and it serves", async () => {
    const killed = killFromOutside();
    await eventually(async () => restarts[0], 30_000, "fraud's restart", 50);
    expect(crashes).toEqual([{ service: "fraud", signal: "SIGKILL", restartInMs: 200 }]);
    expect(restarts).toEqual([{ service: "fraud", error: undefined }]);
    const now = sys.system.info("fraud");
    expect(now.running).toBe(true);
    expect(now.pid).not.toBe(killed);
    const argv = readFileSync(`/proc/${now.pid}/cmdline`, "utf8").split("\0");
    expect(argv.slice(1, 1 + serviceNodeFlags.length + 1)).toEqual([...serviceNodeFlags, extraFlag]);
    await sys.system.waitHealthy("fraud");
  }, 60_000);

  it("waits twice as long after a second crash in a row", async () => {
    killFromOutside();
    await eventually(async () => restarts[1], 30_000, "fraud's second restart", 50);
    expect(crashes[1]).toEqual({ service: "fraud", signal: "SIGKILL", restartInMs: 400 });
    expect(restarts[1]?.error).toBeUndefined();
  }, 60_000);

  it("starts nothing again once it is being stopped", async () => {
    const killed = killFromOutside();
    await eventually(async () => crashes[2], 30_000, "the crash report", 50);
    await sys.system.stop();
    await new Promise((resolve) => setTimeout(resolve, policy.initialDelayMs * 4 * 2));
    const after = sys.system.info("fraud");
    expect(after.running).toBe(false);
    expect(after.pid).toBe(killed);
    expect(restarts).toHaveLength(2);
  }, 60_000);
});

describe("services of a process that died without stopping them", () => {
  it("stop by themselves (npm start killed with SIGKILL leaves no service holding its ports)", async () => {
    // A NATS and Redis of its own: fraud's consumers must not take a running system's commands.
    const dir = mkdtempSync(join(tmpdir(), "orderflow-orphan-"));
    const [nats, redis] = await Promise.all([startPrivate("nats", dir), startPrivate("redis", dir)]);
    if (!nats || !redis) throw new Error("this test needs nats-server and redis-server installed");
    const { databaseUrl } = sharedInfra();
    const [natsUrl, redisUrl] = [nats.url, redis.url];
    // A stand-in for npm start: starts fraud through tools/system.ts and says its pid.
    const script = join(dir, "parent.mjs");
    writeFileSync(
      script,
      `import { System } from ${JSON.stringify(pathToFileURL(join(repoRoot(), "dist", "tools", "system.js")).href)};
const system = new System({ infra: ${JSON.stringify({ databaseUrl, natsUrl, redisUrl })}, services: ["fraud"], ports: "free", inheritEnv: false, detached: true, output: () => undefined });
await system.up();
process.stdout.write(String(system.info("fraud").pid) + "\\n");
setInterval(() => undefined, 60_000);
`,
    );
    const parent = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: parent.stdout }).once("line", resolve);
        parent.once("exit", (code) => reject(new Error(`the stand-in exited (${code}) before it started fraud`)));
      });
      const fraudPid = Number(line);
      const alive = (pid: number) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      expect(alive(fraudPid)).toBe(true);
      parent.kill("SIGKILL");
      await eventually(async () => !alive(fraudPid), 15_000, "the orphaned service to stop", 100);
    } finally {
      parent.kill("SIGKILL");
      await Promise.all([nats.stop(), redis.stop()]);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
