// The arithmetic of `npm run bench:instructions`: a window's count, less what the process
// does when idle over as long, shared out over the work the window did.
import type { Costs } from "./callgrind-costs.js";
import { sum } from "./stats.js";

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

/** A window's instructions per unit of work, in all and by what ran them (the program: neither V8's collector nor its compilers). */
export interface CostsPerUnit {
  all: number;
  program: number;
  gc: number;
  compiler: number;
}

/**
 * `perUnit` for each part of a window's costs. Only the program's part has the idle process's
 * own taken out: an idle service's timers and pollers are program work, where a collection or
 * a compilation in the idle window is the earlier load's, as likely in one window as another.
 */
export function costsPerUnit(window: Costs, windowMs: number, idle: Costs, idleMs: number, units: number): CostsPerUnit {
  const programOf = (costs: Costs): number => costs.total - costs.gc - costs.compiler;
  const program = Math.round(perUnit({ instructions: programOf(window), windowMs, idlePerSec: idleRate(programOf(idle), idleMs), units }));
  const gc = Math.round(perUnit({ instructions: window.gc, windowMs, idlePerSec: 0, units }));
  const compiler = Math.round(perUnit({ instructions: window.compiler, windowMs, idlePerSec: 0, units }));
  return { all: program + gc + compiler, program, gc, compiler };
}

/** Several processes' costs per unit, added part by part. */
export function sumCosts(parts: readonly CostsPerUnit[]): CostsPerUnit {
  return { all: sum(parts.map((p) => p.all)), program: sum(parts.map((p) => p.program)), gc: sum(parts.map((p) => p.gc)), compiler: sum(parts.map((p) => p.compiler)) };
}
