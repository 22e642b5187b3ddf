import { performance } from "node:perf_hooks";
import { jetstream as jetstreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage } from "../services/platform/errors.js";
import type { AutovacuumStandIn } from "./autovacuum.js";
import { CpuSecondSampler } from "./cpu-by-second.js";
import { databaseNow, onDatabase } from "./database.js";
import type { LoadGenerator } from "./generator-process.js";
import { log } from "./log.js";
import { stepLengthMs, type BenchOptions } from "./options.js";
import type { SagaStepResult } from "./protocol.js";
import { QueueSampler } from "./queues.js";
import { ResourceMonitor } from "./resources.js";
import type { BenchResult } from "./results.js";
import { confirmedOrderTimes, stageLatencies, startStageRecording, stopStageRecording, storedTimes } from "./stages.js";
import { sum } from "./stats.js";
import { rejectionNote } from "./throughput.js";
import { countWork, workBetween } from "./work.js";

type Step = BenchResult["saga"]["steps"][number];

export interface SagaRun {
  options: BenchOptions;
  generator: LoadGenerator;
  databaseUrl: string;
  monitor: ResourceMonitor;
  autovacuum: AutovacuumStandIn | undefined;
  nats: NatsConnection;
  jsm: JetStreamManager;
  notes: string[];
}

export interface SagaSteps {
  steps: Step[];
  /** Each step's orders were created between these (Postgres's clock). */
  windows: Array<{ from: string; to: string }>;
  /** The streams kept the steps' messages for `readStages`. */
  recorded: boolean;
}

/** Orders in flight the generator allows at a rate before it drops arrivals. */
const maxInFlightAt = (rate: number): number => Math.max(100, rate * 5);

/**
 * The open-loop saga steps at the run's rates, each with the machine's CPU, the queues and
 * the work per saga beside the generator's figures, after an unrecorded warm-up at the first
 * rate (the first orders open connections and run cold code, not the steady state a step
 * measures). Stops at the first saturated step unless --past-saturation.
 */
export async function runSagaSteps(run: SagaRun): Promise<SagaSteps> {
  const { options, generator, monitor, autovacuum, jsm, notes } = run;
  const firstRate = options.rates[0] ?? 0;
  const warmupMs = options.mode === "smoke" ? 0 : Math.min(5_000, options.stepMs / 2);
  if (warmupMs > 0 && firstRate > 0) {
    log(`saga warm-up: ${firstRate}/s for ${warmupMs / 1000}s (not recorded)…`);
    await generator.run({ kind: "saga-step", index: -1, ratePerSec: firstRate, durationMs: warmupMs, drainTimeoutMs: 15_000, maxInFlight: maxInFlightAt(firstRate), warmupMs: 0 });
    notes.push(`the saga steps followed ${warmupMs / 1000} s of unrecorded load at ${firstRate}/s`);
  }
  const steps: Step[] = [];
  const windows: SagaSteps["windows"] = [];
  const recorded =
    options.stages &&
    (await startStageRecording(jsm).then(
      () => true,
      (err: unknown) => (notes.push(`the saga's stages were not recorded (a targeted system's NATS may refuse the bench a consumer of its streams): ${errorMessage(err)}`), false),
    ));
  for (const [index, rate] of options.rates.entries()) {
    const stepMs = stepLengthMs(options, rate);
    log(`saga: ${rate}/s for ${stepMs / 1000}s…`);
    await autovacuum?.vacuum();
    const createdFrom = await onDatabase(run.databaseUrl, databaseNow);
    const workBefore = await onDatabase(run.databaseUrl, (pool) => countWork(jsm, pool));
    const before = monitor.cpu();
    const wakeUpsBefore = monitor.wakeUps();
    const waitsBefore = monitor.runQueueWaits();
    const t0 = performance.now();
    const queues = await new QueueSampler(jsm).start();
    const stopAnalyzing = autovacuum?.analyzeWhileRunning();
    const cpuSeconds = new CpuSecondSampler(monitor).start();
    const stepStartedAt = Date.now();
    const step: SagaStepResult = await generator.run({
      kind: "saga-step",
      index,
      ratePerSec: rate,
      durationMs: stepMs,
      drainTimeoutMs: options.mode === "smoke" ? 15_000 : Math.min(30_000, Math.max(8_000, stepMs * 2)),
      maxInFlight: maxInFlightAt(rate),
      warmupMs: Math.min(1_000, stepMs / 4),
    });
    const cpuBySecond = cpuSeconds.stop();
    const visits = (await stopAnalyzing?.())?.map(({ at, tables, durationMs }) => ({ fromStepStartMs: at - stepStartedAt, tables, durationMs }));
    // CPU and queues over the arrivals and the drain.
    const cpuAfter = monitor.cpu();
    const concluded = step.confirmed + step.rejected;
    const elapsedMs = performance.now() - t0;
    const serviceCpuPercent = ResourceMonitor.percentOfElapsed(before, cpuAfter, elapsedMs);
    const runQueueWaitPercent = ResourceMonitor.percentOfElapsed(waitsBefore, monitor.runQueueWaits(), elapsedMs);
    const cpuMsPerSaga = ResourceMonitor.cpuMsPer(before, cpuAfter, concluded);
    const wakeUpsPerSaga = ResourceMonitor.wakeUpsPer(wakeUpsBefore, monitor.wakeUps(), concluded);
    const stepQueues = await queues.stop();
    const work = workBetween(workBefore, await onDatabase(run.databaseUrl, (pool) => countWork(jsm, pool)), concluded, recorded);
    windows.push({ from: createdFrom, to: await onDatabase(run.databaseUrl, databaseNow) });
    if (!stepQueues) notes.push(`saga step ${rate}/s: the JetStream consumers could not be sampled (no queue figures)`);
    const rejections = rejectionNote(rate, step.confirmed, step.rejected);
    if (rejections) notes.push(rejections);
    const failures = createFailureNote(step);
    if (failures) notes.push(failures);
    const reasons = saturationReasons(step, rate);
    steps.push({ ...step, serviceCpuPercent, runQueueWaitPercent, cpuMsPerSaga, wakeUpsPerSaga, cpuBySecond, ...(visits && { autovacuumVisits: visits }), queues: stepQueues ?? [], work, stages: [], saturated: reasons.length > 0, saturationReason: reasons.join("; ") });
    log(`  accepted ${step.acceptedPerSec}/s, completed ${step.completedPerSec}/s, backlog ${step.backlogAtEnd}, e2e p99 ${step.e2eLatency.p99} ms${reasons.length > 0 ? ` — saturated: ${reasons.join("; ")}` : ""}`);
    if (reasons.length > 0 && !options.pastSaturation) break;
  }
  return { steps, windows, recorded };
}

/**
 * What the step's failed CreateOrders were told, and when, by code: a count alone says nothing of
 * the cause. Refusals at the bound of orders in progress are left to the saturation reason. Also
 * how many were sent again after a refused stream, which a gRPC client does without failing.
 */
export function createFailureNote(step: Pick<SagaStepResult, "offeredPerSec" | "createErrors" | "createErrorSamples" | "createResent">): string | undefined {
  const parts = Object.entries(step.createErrors)
    .filter(([code]) => code !== "RESOURCE_EXHAUSTED")
    .map(([code, count]) => {
      const samples = (step.createErrorSamples ?? []).filter((sample) => sample.code === code);
      const messages = [...new Set(samples.map((sample) => sample.message))].map((message) => {
        const at = samples.filter((sample) => sample.message === message).map((sample) => `+${(sample.atMs / 1_000).toFixed(1)} s`);
        return `"${message}" at ${at.join(", ")}`;
      });
      return `${code} ×${count}${messages.length > 0 ? ` (the first: ${messages.join("; ")})` : ""}`;
    });
  const resent = step.createResent ? `${step.createResent} CreateOrders sent again after the server refused their stream (a connection's GOAWAY at its maximum age), as gRPC clients do` : "";
  if (parts.length === 0) return resent ? `saga step ${step.offeredPerSec}/s: ${resent}` : undefined;
  return `saga step ${step.offeredPerSec}/s: CreateOrders failed — ${parts.join("; ")}${resent ? `; ${resent}` : ""}`;
}

/** Why a step counts as saturated (none: it kept up). */
function saturationReasons(step: SagaStepResult, rate: number): string[] {
  const reasons: string[] = [];
  const refused = step.createErrors["RESOURCE_EXHAUSTED"] ?? 0;
  const errors = sum(Object.values(step.createErrors)) - refused;
  if (step.completedPerSec < 0.85 * rate) reasons.push(`completed ${Math.round(step.completedPerSec)}/s < 85 % of offered`);
  if (!step.drained) reasons.push(`${step.unfinished} orders still open ${Math.round(step.drainMs / 1000)}s after the step`);
  if (refused > 0.01 * step.scheduled) reasons.push(`${refused} CreateOrders refused at the bound of orders in progress`);
  if (errors > 0.01 * step.scheduled) reasons.push(`${errors} CreateOrder errors`);
  if (step.dropped > 0) reasons.push(`${step.dropped} arrivals dropped at the in-flight cap`);
  return reasons;
}

/** Fills each step's stages: when its confirmed orders' commands and replies were stored in JetStream. */
export async function readStages(run: Pick<SagaRun, "databaseUrl" | "nats" | "jsm" | "notes">, customerPrefix: string, saga: SagaSteps): Promise<void> {
  if (!saga.recorded) return;
  log("saga stages: when each step's commands and replies were stored…");
  await onDatabase(run.databaseUrl, async (pool) => {
    const ordersByStep = await Promise.all(saga.windows.map((window) => confirmedOrderTimes(pool, customerPrefix, window.from, window.to)));
    // The last conclusion events are published after the last CONFIRMED write began.
    const lastWriteMs = ordersByStep.flat().reduce((last, o) => Math.max(last, o.confirmedMs), 0);
    const first = saga.windows[0];
    if (!first || lastWriteMs === 0) return;
    // One read of the streams over every step: the steps' windows follow each other.
    const stored = await storedTimes(jetstreamClient(run.nats), lastWriteMs + 10_000);
    for (const [index, step] of saga.steps.entries()) {
      const orders = ordersByStep[index] ?? [];
      if (orders.length > 0) step.stages = stageLatencies(orders, stored);
    }
  })
    .catch((err: unknown) => run.notes.push(`the saga's stages could not be read back: ${errorMessage(err)}`))
    .finally(() => stopStageRecording(run.jsm).catch((err: unknown) => run.notes.push(`the stages' recording consumers stay until they expire (15 minutes unread): ${errorMessage(err)}`)));
}
