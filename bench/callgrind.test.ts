import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { callgrindPrefix, InstructionCounter } from "./callgrind.js";
import { sleep } from "./log.js";

const hasValgrind = spawnSync("valgrind", ["--version"]).status === 0;

describe("InstructionCounter", () => {
  let child: ChildProcess | undefined;
  let dir: string | undefined;
  afterEach(() => {
    child?.kill("SIGKILL");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!hasValgrind)("counts a running process's instructions, and zero() drops what it has counted so far", async () => {
    dir = mkdtempSync(join(tmpdir(), "orderflow-callgrind-test-"));
    const [command = "valgrind", ...args] = [...callgrindPrefix(join(dir, "loop")), "sh", "-c", "while :; do :; done"];
    child = spawn(command, args, { stdio: "ignore" });
    const pid = child.pid ?? 0;
    const counter = new InstructionCounter(pid, join(dir, "loop"));
    await sleep(1_500);
    await counter.zero();
    // The few milliseconds between two callgrind_control calls, not the 1.5 s of looping before them.
    const justAfterZero = (await counter.dump()).total;
    await sleep(1_500);
    const overLoop = (await counter.dump()).total;
    expect(overLoop).toBeGreaterThan(1_000_000);
    expect(justAfterZero).toBeLessThan(overLoop / 4);
    // valgrind's pipes to callgrind_control stay in the run's folder.
    expect(readdirSync(dir).some((file) => file.startsWith("loop-vgdb"))).toBe(true);
    expect(readdirSync(tmpdir()).some((file) => file.includes(`vgdb-${pid}-`) || file.endsWith(`-${pid}-by-???-on-???`))).toBe(false);
  }, 60_000);
});
