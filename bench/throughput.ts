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
  const warmedUp = step.start + step.warmupMs;
  const shifted = Math.max(warmedUp, step.start + step.medianLatencyMs);
  const from = step.arrivalsEnd - shifted >= minimumWindowMs ? shifted : warmedUp;
  const span = step.arrivalsEnd - from;
  return span > 0 ? confirmed.countWithin(from, step.arrivalsEnd) / (span / 1_000) : 0;
}
