import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../tools/system.js";
import { fullRunsTable, type KeptRun, readFullRuns, type RunFigures } from "./full-runs.js";

const latency = (p50: number, p99: number) => ({ count: 1, p50, p90: p99, p99, max: p99, mean: p50 });

function run(date: string, commit: string, steps: RunFigures["saga"]["steps"], h2load?: RunFigures["transportH2load"], cpuModel?: string): KeptRun {
  return {
    file: `${date.slice(0, 10)}-${commit}.json`,
    result: {
      mode: "full",
      machine: { date, gitCommit: commit, loadAverageAtStart: [0.5, 1, 1], ...(cpuModel ? { cpuModel } : {}) },
      saga: { steps },
      ceilings: { grpcJs: { perSec: 5000 }, postgres: { txPerSec: 4000 }, jetstream: { roundTripMsgsPerSec: 20000 } },
      ...(h2load ? { transportH2load: h2load } : {}),
    },
  };
}

describe("the full runs table", () => {
  it("gives each run its ceilings, last step and latencies, with the drain-window figure marked", () => {
    const rows = fullRunsTable([
      run("2026-12-03T18:21:48.743Z", "8ccb2cb", [
        { offeredPerSec: 50, completedPerSec: 50, completedInWindowPerSec: 50, e2eLatency: latency(40.42, 113.51) },
        { offeredPerSec: 1200, completedPerSec: 706.2, completedInWindowPerSec: 716.4, e2eLatency: latency(3119.7, 4299.5) },
      ], [
        { name: "Health/Check bare grpc-js", protocol: "grpc", perSec: 16666.4, serverCpuUsPerCall: 56.1 },
        { name: "GetOrder warm (one id)", protocol: "grpc", perSec: 8252.8, serverCpuUsPerCall: 80.2 },
        { name: "GetOrder warm (one id)", protocol: "connect", perSec: 4251.4 },
      ], "Intel(R) Xeon(R) Processor"),
      run("2026-12-02T15:41:00.000Z", "916c7de", [{ offeredPerSec: 1700, completedPerSec: 1118, completedInWindowPerSec: 695, e2eLatency: latency(5852, 6697) }]),
    ]).split("\n");
    expect(rows).toHaveLength(4);
    expect(rows[2]).toBe("| [2026-12-03 18:21 8ccb2cb](../bench/results/2026-12-03-8ccb2cb.json) | Intel Xeon | 0.5 | 5,000 · 16,666 | 4,000 | 20,000 | 706 at 1,200 | 40.4 / 114 | — | — | 0.50 | 0.70 |");
    expect(rows[3]).toBe("| [2026-12-02 15:41 916c7de](../bench/results/2026-12-02-916c7de.json) | — | 0.5 | 5,000 · — | 4,000 | 20,000 | 1,118 (695\\*) at 1,700 | — | — | — | — | — |");
  });

  it("divides a GetOrder measured in alternated rounds by the bare grpc-js server it alternated with", () => {
    const alternated = { with: "the other", serverCpuUsPerCallByRound: [] };
    const [, , row] = fullRunsTable([
      run("2026-12-05T10:00:00.000Z", "abcdef0", [{ offeredPerSec: 50, completedPerSec: 50, completedInWindowPerSec: 50, e2eLatency: latency(10, 20) }], [
        { name: "Health/Check bare grpc-js", protocol: "grpc", perSec: 20000, serverCpuUsPerCall: 50 },
        { name: "Health/Check bare grpc-js, alternated with GetOrder", protocol: "grpc", perSec: 40000, serverCpuUsPerCall: 30, alternated },
        { name: "GetOrder warm (one id)", protocol: "grpc", perSec: 30000, serverCpuUsPerCall: 40, alternated },
      ], "AMD EPYC"),
    ]).split("\n");
    expect(row).toBe("| [2026-12-05 10:00 abcdef0](../bench/results/2026-12-05-abcdef0.json) | AMD EPYC | 0.5 | 5,000 · 20,000 | 4,000 | 20,000 | 50 at 50 | 10 / 20 | — | — | 0.75 | 0.75 |");
  });

  it("marks a run whose services ran under their pods' memory limits", () => {
    const limited = run("2026-12-07T12:51:00.000Z", "7557dae", [{ offeredPerSec: 50, completedPerSec: 50, completedInWindowPerSec: 50, e2eLatency: latency(10, 20) }]);
    limited.result.config = { podMemory: true };
    const [, , row] = fullRunsTable([limited]).split("\n");
    expect(row).toMatch(/^\| \[2026-12-07 12:51 7557dae\]\(\.\.\/bench\/results\/2026-12-07-7557dae\.json\) \(--pod-memory\) \| — \|/);
  });

  it("reads every full run kept in bench/results, oldest first, and no other", () => {
    const dir = join(repoRoot(), "bench", "results");
    const full = readdirSync(dir).filter((f) => /^\d{4}-.+\.json$/.test(f) && (JSON.parse(readFileSync(join(dir, f), "utf8")) as { mode: string }).mode === "full");
    const runs = readFullRuns(dir);
    expect(runs.map((r) => r.file).sort()).toEqual(full.sort());
    const dates = runs.map((r) => r.result.machine.date);
    expect(dates).toEqual([...dates].sort());
    expect(fullRunsTable(runs).split("\n")).toHaveLength(runs.length + 2);
  });
});
