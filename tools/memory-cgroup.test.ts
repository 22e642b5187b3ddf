import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryCgroup, MemoryCgroupError, removeLeftoverCgroups } from "./memory-cgroup.js";
import { projectNode } from "./system.js";

const mebibyte = 2 ** 20;

const made: MemoryCgroup[] = [];
function cgroup(name: string, limitMb: number): MemoryCgroup | undefined {
  const group = MemoryCgroup.tryCreate(`orderflow-test-${name}-${process.pid}`, limitMb * mebibyte);
  if (group !== undefined) made.push(group);
  return group;
}
afterAll(() => {
  for (const group of made) group.remove();
});

/** Runs node with `script` inside `group`. */
function runInside(group: MemoryCgroup, script: string): ReturnType<typeof spawnSync> {
  const { command, args } = group.wrap(projectNode(), ["-e", script]);
  return spawnSync(command, args, { encoding: "utf8" });
}

// Touches `mb` MiB in 8 MiB buffers and keeps them.
const allocate = (mb: number): string => `const kept = []; for (let i = 0; i < ${mb / 8}; i++) kept.push(Buffer.alloc(8 * 2 ** 20, 1)); process.stdout.write(require("node:fs").readFileSync("/proc/self/cgroup", "utf8"));`;

const roomy = cgroup("roomy", 256);
const tight = cgroup("tight", 128);

describe("MemoryCgroup on this machine's kernel", () => {
  it.skipIf(roomy === undefined)("runs the process inside from its start and records what it was charged", () => {
    const group = roomy as MemoryCgroup;
    const run = runInside(group, allocate(48));
    expect(run.status, String(run.stderr)).toBe(0);
    expect(String(run.stdout)).toContain(group.dir.split("/").pop());
    const usage = group.usage();
    expect(usage.limitMb).toBe(256);
    expect(usage.peakMb).toBeGreaterThanOrEqual(48);
    expect(usage.peakMb).toBeLessThanOrEqual(256);
    expect(usage.oomKills).toBe(0);
    if (usage.limitHits !== null) expect(usage.limitHits).toBe(0);
  });

  it.skipIf(tight === undefined)("has the kernel kill a process that outgrows the limit, and counts it", () => {
    const group = tight as MemoryCgroup;
    const run = runInside(group, allocate(512));
    expect(run.signal).toBe("SIGKILL");
    const usage = group.usage();
    expect(usage.oomKills).toBe(1);
    if (usage.limitHits !== null) expect(usage.limitHits).toBeGreaterThan(0);
    expect(usage.peakMb).toBeLessThanOrEqual(128);
  });

  it.skipIf(roomy === undefined)("is removed once its processes are gone", () => {
    const group = cgroup("removed", 64) as MemoryCgroup;
    expect(group.remove()).toBe(true);
    expect(group.remove()).toBe(true);
  });
});

describe("MemoryCgroup's files", () => {
  const fake = mkdtempSync(join(tmpdir(), "orderflow-cgroupfs-"));
  afterAll(() => rmSync(fake, { recursive: true, force: true }));

  it("on cgroup v2 sets memory.max and no swap under the root, and reads memory.peak and memory.events", () => {
    const mount = join(fake, "v2");
    mkdirSync(mount);
    writeFileSync(join(mount, "cgroup.controllers"), "cpu memory pids\n");
    writeFileSync(join(mount, "cgroup.subtree_control"), "cpu\n");
    mkdirSync(join(mount, "svc"));
    writeFileSync(join(mount, "svc", "memory.swap.max"), "max\n");
    const group = MemoryCgroup.create("svc", 512 * mebibyte, mount, "/nonexistent");
    expect(readFileSync(join(mount, "cgroup.subtree_control"), "utf8")).toBe("+memory");
    expect(readFileSync(join(mount, "svc", "memory.max"), "utf8")).toBe(String(512 * mebibyte));
    expect(readFileSync(join(mount, "svc", "memory.swap.max"), "utf8")).toBe("0");
    writeFileSync(join(mount, "svc", "memory.peak"), `${300 * mebibyte}\n`);
    writeFileSync(join(mount, "svc", "memory.events"), "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n");
    expect(group.usage()).toEqual({ limitMb: 512, peakMb: 300, limitHits: 7, oomKills: 1 });
    expect(group.wrap("node", ["main.js"])).toEqual({ command: "/bin/sh", args: ["-c", 'echo $$ > "$0" && exec "$@"', join(mount, "svc", "cgroup.procs"), "node", "main.js"] });
  });

  it("on cgroup v1 goes under this process's memory cgroup and reads max_usage_in_bytes and oom_control", () => {
    const mount = join(fake, "v1");
    const own = join(mount, "memory", "jobs", "42", "svc");
    mkdirSync(own, { recursive: true });
    writeFileSync(join(own, "memory.memsw.limit_in_bytes"), "9223372036854771712\n");
    const self = join(fake, "self-cgroup");
    writeFileSync(self, "5:cpu:/\n4:memory:/jobs/42\n0::/\n");
    const group = MemoryCgroup.create("svc", 1024 * mebibyte, mount, self);
    expect(group.dir).toBe(own);
    expect(readFileSync(join(own, "memory.limit_in_bytes"), "utf8")).toBe(String(1024 * mebibyte));
    expect(readFileSync(join(own, "memory.memsw.limit_in_bytes"), "utf8")).toBe(String(1024 * mebibyte));
    writeFileSync(join(own, "memory.max_usage_in_bytes"), `${368 * mebibyte}\n`);
    writeFileSync(join(own, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    expect(group.usage()).toEqual({ limitMb: 1024, peakMb: 368, limitHits: null, oomKills: 0 });
  });

  it("removes the cgroups that processes no longer running left behind, and no other", () => {
    const mount = join(fake, "leftovers");
    const parent = join(mount, "memory", "jobs");
    const self = join(fake, "leftovers-self");
    writeFileSync(self, "4:memory:/jobs\n");
    const gone = 2 ** 30; // above any pid_max
    for (const name of [`orderflow-order-${gone}`, `orderflow-fraud-2-${gone}`, `orderflow-order-${process.pid}`, `other-order-${gone}`, "orderflow-order"]) mkdirSync(join(parent, name), { recursive: true });
    expect(removeLeftoverCgroups("orderflow-", mount, self)).toBe(2);
    expect(readdirSync(parent).sort()).toEqual(["orderflow-order", `orderflow-order-${process.pid}`, `other-order-${gone}`]);
    expect(removeLeftoverCgroups("orderflow-", join(fake, "nowhere"), join(fake, "no-such-file"))).toBe(0);
  });

  it("says why when there is no memory cgroup to make one under", () => {
    const self = join(fake, "no-memory");
    writeFileSync(self, "0::/\n");
    expect(() => MemoryCgroup.create("svc", mebibyte, join(fake, "empty"), self)).toThrow(/no memory cgroup to make one under/);
    expect(() => MemoryCgroup.create("a/b", mebibyte)).toThrow(MemoryCgroupError);
  });
});
