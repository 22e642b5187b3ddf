import type { Samples } from "./stats.js";

/** A saga step's clock, in the generator's performance.now() milliseconds. */
export interface StepWindow {
  /** When the step's first arrival was due. */
  start: number;
  /** Left out at the start of the step. */
  warmupMs: number;
  /** When the last arrival was due. */
  arrivalsEnd: number;
  /** The step's median end-to-end latency. */
  medianLatencyMs: number;
}

/** A shorter stretch of the arrivals than this is too short to count on. */
const minimumWindowMs = 1_000;

/**
 * Confirmations per second while a step's arrivals ran, counted from the step's median
 * end-to-end latency after its start (or its warm-up, if that is later) until the last
 * arrival: the arrival rate when the system keeps up, whatever its latency, and its
 * capacity under that load when it falls behind. What is confirmed after the arrivals end
 * is left out: with no CreateOrder calls left to serve, the system drains its backlog
 * faster than it confirmed under load. When the median latency leaves less than a second
 * of the arrivals, the arrivals after the warm-up are counted whole.
 */
export function completedWhileArriving(confirmed: Samples, step: StepWindow): number {
  const shifted = step.start + Math.max(step.warmupMs, step.medianLatencyMs);
  return step.arrivalsEnd - shifted >= minimumWindowMs ? perSecond(confirmed, shifted, step.arrivalsEnd) : completedAfterWarmUp(confirmed, step);
}

/** Confirmations per second from the end of the warm-up to the last arrival. */
export function completedAfterWarmUp(confirmed: Samples, step: Omit<StepWindow, "medianLatencyMs">): number {
  return perSecond(confirmed, step.start + step.warmupMs, step.arrivalsEnd);
}

function perSecond(confirmed: Samples, from: number, to: number): number {
  return to > from ? confirmed.countWithin(from, to) / ((to - from) / 1_000) : 0;
}

/**
 * A note for a step whose orders were rejected (1 % or more of those concluded): the bench's
 * customers are funded and its products stocked, so a rejection is the system declining the
 * load — against a system started with `npm start`'s defaults, fraud's per-customer velocity
 * limit. Completed/s counts confirmations only, so without the note it reads as saturation.
 */
export function rejectionNote(offeredPerSec: number, confirmed: number, rejected: number): string | undefined {
  const concluded = confirmed + rejected;
  if (concluded === 0 || rejected < 0.01 * concluded) return undefined;
  return `saga step ${offeredPerSec}/s: ${rejected} of ${concluded} concluded orders were rejected, and completed/s counts confirmations only — a targeted system started with npm start's defaults declines a customer's orders past FRAUD_VELOCITY_MAX_ORDERS a minute (bench/README.md)`;
}
