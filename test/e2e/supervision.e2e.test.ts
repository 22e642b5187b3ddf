/**
 * npm start's supervision (tools/system.ts with a restart policy) with a real
 * service: killed from outside, it comes back and answers SERVING, each crash in
 * a row waits twice as long, and a system being stopped starts nothing again.
 * The orderings real services show only sometimes: tools/supervision.test.ts.
 */
import { eventually } from "../support/saga-system.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestSystem, type TestSystem } from "../support/system.js";

const policy = { initialDelayMs: 200, maxDelayMs: 1_000, resetAfterMs: 60_000 };
const crashes: Array<{ service: string; signal: string | null; restartInMs: number | undefined }> = [];
const restarts: Array<{ service: string; error: Error | undefined }> = [];
let sys: TestSystem;

beforeAll(async () => {
  sys = await startTestSystem({
    services: ["fraud"],
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
  it("starts a killed service again, and it serves", async () => {
    const killed = killFromOutside();
    await eventually(async () => restarts[0], 30_000, "fraud's restart", 50);
    expect(crashes).toEqual([{ service: "fraud", signal: "SIGKILL", restartInMs: 200 }]);
    expect(restarts).toEqual([{ service: "fraud", error: undefined }]);
    const now = sys.system.info("fraud");
    expect(now.running).toBe(true);
    expect(now.pid).not.toBe(killed);
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
