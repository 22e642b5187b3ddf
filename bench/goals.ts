import type { BenchResult, Ratio } from "./results.js";
import { figure, milliseconds } from "./stats.js";

/** Sagas a second the whole saga must complete on one 2-core machine. */
export const goalSagasPerSec = 1_700;
/** The end-to-end p99 bound, at half the goal's rate. */
export const goalP99Ms = 100;
export const goalLatencyRatePerSec = goalSagasPerSec / 2;
/** CreateOrder and GetOrder against a bare grpc-js server on the same machine. */
export const goalRatio = 0.8;

/** One of the goal's figures as this run measured it. */
export interface GoalCheck {
  goal: string;
  target: string;
  /** What the run measured, or why it did not. */
  measured: string;
  /** null: the run did not measure it (a rate it did not offer, a call it did not make). */
  met: boolean | null;
}

/**
 * The share of its offered rate a step must confirm to count for the goal. A step is saturated
 * only below 85 % (bench/saga-steps.ts), which finds where the system stops keeping up; the goal
 * asks for the rate itself. The count runs from the step's median latency on, so a system that
 * keeps pace reads within 1–2 % of the offered rate (98.2–100 % in every full run that did).
 */
export const goalCompletedShare = 0.98;

function throughput(saga: BenchResult["saga"]): GoalCheck {
  const goal = "sagas completed a second";
  const target = `≥ ${figure(goalSagasPerSec)}/s`;
  const offered = Math.max(0, ...saga.steps.map((s) => s.offeredPerSec));
  const measured = `kept up with ${figure(saga.sustainedPerSec)}/s offered; at most ${figure(saga.maxCompletedPerSec)}/s completed`;
  const share = (step: BenchResult["saga"]["steps"][number]): number => step.completedPerSec / step.offeredPerSec;
  const closest = saga.steps.filter((s) => s.offeredPerSec >= goalSagasPerSec && !s.saturated).sort((a, b) => share(b) - share(a))[0];
  if (closest && share(closest) >= goalCompletedShare) return { goal, target, measured, met: true };
  if (closest) {
    return { goal, target, measured: `${measured}, but at ${figure(closest.offeredPerSec)}/s it confirmed ${figure(closest.completedPerSec)}/s (${Math.floor(share(closest) * 100)} %; the goal counts ≥ ${goalCompletedShare * 100} %)`, met: false };
  }
  if (!saga.saturated && offered < goalSagasPerSec) return { goal, target, measured: `not offered (the highest rate was ${figure(offered)}/s)`, met: null };
  return { goal, target, measured, met: false };
}

function latency(saga: BenchResult["saga"]): GoalCheck {
  const goal = `end-to-end p99 at ${figure(goalLatencyRatePerSec)}/s`;
  const target = `< ${goalP99Ms} ms`;
  const step = saga.steps.find((s) => s.offeredPerSec === goalLatencyRatePerSec);
  if (step) {
    const p99 = `${milliseconds(step.e2eLatency.p99)} ms (median ${milliseconds(step.e2eLatency.p50)} ms; ${figure(step.durationMs / 1000)}-s step)`;
    if (step.saturated) return { goal, target, measured: `saturated: ${figure(step.completedPerSec)}/s completed, p99 ${p99}`, met: false };
    return { goal, target, measured: p99, met: step.e2eLatency.p99 < goalP99Ms };
  }
  const saturatedAt = saga.steps.find((s) => s.saturated && s.offeredPerSec < goalLatencyRatePerSec);
  if (saturatedAt) return { goal, target, measured: `saturated at ${figure(saturatedAt.offeredPerSec)}/s, below ${figure(goalLatencyRatePerSec)}/s`, met: false };
  return { goal, target, measured: `no step at ${figure(goalLatencyRatePerSec)}/s (--rates)`, met: null };
}

function againstBare(call: string, ratios: Ratio[], names: { primary: string; cpu?: string; fallback?: string }): GoalCheck {
  const goal = `${call} vs a bare grpc-js server`;
  const target = `≥ ${goalRatio}`;
  const byName = (name: string | undefined): Ratio | undefined => (name === undefined ? undefined : ratios.find((r) => r.name === name));
  const primary = byName(names.primary);
  const cpu = byName(names.cpu);
  const chosen = primary ?? byName(names.fallback);
  if (!chosen) return { goal, target, measured: "not measured", met: null };
  const how = chosen === primary && names.cpu !== undefined ? "h2load" : "Node generator";
  const measured = `${chosen.ratio.toFixed(2)} (${how}: ${figure(chosen.system)} against ${figure(chosen.ceiling)} req/s${chosen === primary && cpu ? `; ${cpu.ratio.toFixed(2)} by server CPU per call` : ""})`;
  return { goal, target, measured, met: chosen.ratio >= goalRatio };
}

/** The goal's four figures, each with this run's measure and whether it was met. */
export function goalsOf(result: Pick<BenchResult, "saga" | "ratios">): GoalCheck[] {
  const { saga, ratios } = result;
  const getOrder = "GetOrder warm (one id) gRPC vs bare grpc-js";
  return [
    throughput(saga),
    latency(saga),
    againstBare("CreateOrder (gRPC)", ratios, { primary: "CreateOrder gRPC vs bare grpc-js" }),
    againstBare("cached GetOrder (gRPC)", ratios, { primary: `h2load: ${getOrder}`, cpu: `h2load CPU: ${getOrder}`, fallback: "GetOrder warm gRPC vs bare grpc-js" }),
  ];
}
