// The table of every full run kept in bench/results/ (docs/performance-history.md#full-runs).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { figure, type LatencySummary } from "./stats.js";

/** What the table reads of a result; files written by older versions of the bench may lack the optional parts. */
export interface RunFigures {
  mode: string;
  machine: { date: string; gitCommit: string; cpuModel?: string; loadAverageAtStart?: number[] };
  config?: { podMemory?: boolean };
  saga: { steps: { offeredPerSec: number; completedPerSec: number; completedInWindowPerSec?: number; e2eLatency: LatencySummary }[] };
  ceilings: { grpcJs: { perSec: number }; postgres: { txPerSec: number }; jetstream: { roundTripMsgsPerSec: number } };
  transportH2load?: { name: string; protocol: string; perSec: number; serverCpuUsPerCall?: number | null; alternated?: object }[];
}

export interface KeptRun {
  /** File name in the results folder. */
  file: string;
  result: RunFigures;
}

/** The full runs (mode "full") among the dated result files of `dir`, oldest first. */
export function readFullRuns(dir: string): KeptRun[] {
  return readdirSync(dir)
    .filter((file) => /^\d{4}-\d{2}-\d{2}-.+\.json$/.test(file))
    .map((file) => ({ file, result: JSON.parse(readFileSync(join(dir, file), "utf8")) as RunFigures }))
    .filter((run) => run.result.mode === "full")
    .sort((a, b) => a.result.machine.date.localeCompare(b.result.machine.date));
}

const header = [
  "run (UTC)",
  "processor",
  "load average at start",
  "bare grpc-js req/s (Node · h2load)",
  "Postgres tx/s",
  "JetStream round trips/s",
  "completed/s at the last step, at offered/s",
  "end to end p50 / p99 ms at 50/s",
  "at 400/s",
  "at 800/s",
  "cached GetOrder ÷ bare grpc-js (h2load)",
  "the same by server CPU per call",
];

/** One Markdown row per run; links are relative to docs/. */
export function fullRunsTable(runs: readonly KeptRun[]): string {
  const rows = runs.map(({ file, result }) => {
    const { machine, saga, ceilings } = result;
    const steps = saga.steps;
    const endToEnd = (rate: number): string => {
      const step = steps.find((s) => s.offeredPerSec === rate);
      return step ? `${figure(step.e2eLatency.p50)} / ${figure(step.e2eLatency.p99)}` : "—";
    };
    const last = steps.at(-1);
    const h2loadRun = (name: string) => result.transportH2load?.find((t) => t.name.startsWith(name) && t.protocol === "grpc");
    const bare = h2loadRun("Health/Check bare grpc-js");
    const getOrder = h2loadRun("GetOrder warm");
    // From 74a10e1 on, GetOrder is measured in rounds alternated with a bare grpc-js server of its own.
    const alternatedBare = getOrder?.alternated ? result.transportH2load?.find((t) => t.alternated && t.name.startsWith("Health/Check bare grpc-js")) : undefined;
    const beside = alternatedBare ?? bare;
    return [
      `[${machine.date.slice(0, 16).replace("T", " ")} ${machine.gitCommit}](../bench/results/${file})${result.config?.podMemory ? " (--pod-memory)" : ""}`,
      machine.cpuModel ? processorName(machine.cpuModel) : "—",
      machine.loadAverageAtStart?.[0]?.toString() ?? "—",
      `${figure(ceilings.grpcJs.perSec)} · ${bare === undefined ? "—" : figure(bare.perSec)}`,
      figure(ceilings.postgres.txPerSec),
      figure(ceilings.jetstream.roundTripMsgsPerSec),
      last ? `${completed(last)} at ${figure(last.offeredPerSec)}` : "—",
      endToEnd(50),
      endToEnd(400),
      endToEnd(800),
      getOrder && beside?.perSec ? (getOrder.perSec / beside.perSec).toFixed(2) : "—",
      beside?.serverCpuUsPerCall && getOrder?.serverCpuUsPerCall ? (beside.serverCpuUsPerCall / getOrder.serverCpuUsPerCall).toFixed(2) : "—",
    ];
  });
  return [header, header.map(() => "---"), ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

/** Completed/s, and the confirmations while the arrivals ran where a window reaching into the drain made it 5 % higher or more. */
function completed(step: RunFigures["saga"]["steps"][number]): string {
  const inWindow = step.completedInWindowPerSec;
  if (inWindow === undefined || inWindow >= 0.95 * step.completedPerSec) return figure(step.completedPerSec);
  return `${figure(step.completedPerSec)} (${figure(inWindow)}\\*)`;
}

/** A guest's processor as the table names it: "Intel(R) Xeon(R) Processor" → "Intel Xeon". */
function processorName(model: string): string {
  return model.replace(/\((R|TM)\)/g, "").replace(/\s+Processor\b.*$/, "").replace(/\s+/g, " ").trim();
}
