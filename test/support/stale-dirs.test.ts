import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { movedPostgresParent } from "../../tools/infra.js";
import { testDataDirPrefix } from "./names.js";
import { removeStaleTestDirs } from "./stale-dirs.js";

const root = mkdtempSync(join(tmpdir(), "orderflow-stale-dirs-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The pid of a process that has exited (and been reaped). */
const deadPid = (): number => {
  const child = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  return Number(child.stdout.trim());
};

/** A test system's folder of run `pid`, with a private Postgres's data moved out of it, as tools/infra.ts moves it. */
function testDir(pid: number, postmasterPid?: number): { dir: string; moved: string } {
  const dir = join(root, `${testDataDirPrefix}${pid}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(join(dir, "nats-4333"), { recursive: true });
  writeFileSync(join(dir, "nats-4333.log"), "log\n");
  const moved = movedPostgresParent(join(dir, "postgres-5999"));
  mkdirSync(join(moved, "postgres-5999"), { recursive: true });
  if (postmasterPid !== undefined) writeFileSync(join(moved, "postgres-5999", "postmaster.pid"), `${postmasterPid}\n/data\n`);
  mkdirSync(join(dir, "postgres-5999"));
  return { dir, moved };
}

describe("removeStaleTestDirs", () => {
  it("removes a killed run's folders, keeps a live run's and any a Postgres still runs on", () => {
    const killed = testDir(deadPid(), deadPid());
    const live = testDir(process.pid);
    const serving = testDir(deadPid(), process.pid);
    const other = join(root, "orderflow-bench-123-services.log");
    writeFileSync(other, "");
    try {
      removeStaleTestDirs(root);
      expect([existsSync(killed.dir), existsSync(killed.moved)]).toEqual([false, false]);
      expect([existsSync(live.dir), existsSync(live.moved)]).toEqual([true, true]);
      expect([existsSync(serving.dir), existsSync(serving.moved)]).toEqual([true, true]);
      expect(existsSync(other)).toBe(true);
    } finally {
      for (const { moved } of [killed, live, serving]) rmSync(moved, { recursive: true, force: true });
    }
  });
});
