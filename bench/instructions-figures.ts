// The arithmetic of `npm run bench:instructions`: a window's count, less what the process
// does when idle over as long, shared out over the work the window did.
import type { Costs } from "./callgrind-costs.js";

export interface Window {
  /** Instructions callgrind counted in the window. */
  instructions: number;
  windowMs: number;
  /** What the same process executes per second with no load (its timers, pollers, heartbeats). */
  idlePerSec: number;
  /** Sagas confirmed, or calls answered, in the window. */
  units: number;
}

/** Instructions per unit of work, the idle process's own over the same time taken out. */
export function perUnit({ instructions, windowMs, idlePerSec, units }: Window): number {
  if (units <= 0) throw new Error("the window did no work to share its instructions over");
  return Math.max(0, instructions - (idlePerSec * windowMs) / 1_000) / units;
}

/** Instructions per second over an idle window. */
export function idleRate(instructions: number, windowMs: number): number {
  return windowMs > 0 ? (instructions * 1_000) / windowMs : 0;
}

export function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

/** A window's instructions per unit of work, in all and by what ran them (the program: neither V8's collector nor its compilers). */
export interface CostsPerUnit {
  all: number;
  program: number;
  gc: number;
  compiler: number;
}

/** `perUnit` for each part of a window's costs, the idle process's own part by part. */
export function costsPerUnit(window: Costs, windowMs: number, idle: Costs, idleMs: number, units: number): CostsPerUnit {
  const part = (of: (costs: Costs) => number): number => Math.round(perUnit({ instructions: of(window), windowMs, idlePerSec: idleRate(of(idle), idleMs), units }));
  return {
    all: part((c) => c.total),
    program: part((c) => c.total - c.gc - c.compiler),
    gc: part((c) => c.gc),
    compiler: part((c) => c.compiler),
  };
}
