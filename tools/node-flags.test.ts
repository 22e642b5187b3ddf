import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryCgroup } from "./memory-cgroup.js";
import { serviceNodeFlags } from "./node-flags.js";
import { projectNode } from "./system.js";

// Allocates short-lived objects for a second and prints the largest the young generation grew, in MiB.
const youngGenerationProbe = `
const v8 = require("node:v8");
let keep = [], largest = 0;
for (const end = Date.now() + 1000; Date.now() < end; ) {
  for (let i = 0; i < 10000; i++) { keep.push({ i, pair: [i, i] }); if (keep.length > 200000) keep = []; }
  largest = Math.max(largest, v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size);
}
process.stdout.write(String(largest / 2 ** 20));`;

// Limited as the chart limits inventory, fraud and payment.
const cgroup = MemoryCgroup.tryCreate(`orderflow-node-flags-${process.pid}`, 512 * 2 ** 20);
afterAll(() => cgroup?.remove());

describe("serviceNodeFlags", () => {
  const node = projectNode();
  const youngGenerationMiB = (flags: readonly string[]): number => {
    if (cgroup === undefined) throw new Error("no cgroup");
    const { command, args } = cgroup.wrap(node, [...flags, "-e", youngGenerationProbe]);
    const run = spawnSync(command, args, { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    return Number(run.stdout);
  };

  it.skipIf(cgroup === undefined)("give a process under the chart's 512Mi limit the young generation it has on a roomy host", () => {
    // By itself V8 keeps the young generation small under this limit: 2–6.25 MiB seen, growing
    // with how the scavenges fall; with the services' flags it grows as on a host with memory to
    // spare (128 MiB seen). A quarter of that is the bound, not the figures seen, which vary.
    expect(youngGenerationMiB([])).toBeLessThan(16);
    expect(youngGenerationMiB(serviceNodeFlags)).toBeGreaterThanOrEqual(64);
  });
});
