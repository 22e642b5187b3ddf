import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "./system.js";

const built = join(repoRoot(), "dist", "tools", "stop-with-parent.js");

/** Running, not a zombie: a killed orphan may wait for a reaper that this machine's init is not. */
function alive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  const state = readFileSync(stat, "utf8").split(") ")[1]?.[0];
  return state !== "Z" && state !== "X";
}

/**
 * A Node process that starts a stand-in server (`sleep`), watches it with stopWithParent
 * (cancelled at once if asked), prints the server's pid and waits to be killed.
 */
function parentWithServer(cancel: boolean): Promise<{ parentPid: number; serverPid: number }> {
  const script = `
    import { spawn } from "node:child_process";
    import { stopWithParent } from ${JSON.stringify(built)};
    const server = spawn("sleep", ["300"], { detached: true, stdio: "ignore" });
    server.unref();
    const cancelWatch = stopWithParent(["kill", String(server.pid)]);
    if (${cancel}) cancelWatch();
    process.stdout.write(server.pid + "\\n");
    setInterval(() => undefined, 1_000);`;
  const parent = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    parent.stdout.once("data", (chunk: Buffer) => resolve({ parentPid: parent.pid ?? 0, serverPid: Number(chunk.toString().trim()) }));
    parent.once("error", reject);
  });
}

describe("stopWithParent (the compiled module, as npm start runs it)", () => {
  it("stops the server when its parent is killed with SIGKILL", async () => {
    const { parentPid, serverPid } = await parentWithServer(false);
    expect(alive(serverPid)).toBe(true);
    process.kill(parentPid, "SIGKILL");
    await expect.poll(() => alive(serverPid), { timeout: 5_000, interval: 50 }).toBe(false);
  });

  it("leaves the server alone once cancelled", async () => {
    const { parentPid, serverPid } = await parentWithServer(true);
    process.kill(parentPid, "SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 500));
    try {
      expect(alive(serverPid)).toBe(true);
    } finally {
      process.kill(serverPid, "SIGKILL");
    }
  });
});
