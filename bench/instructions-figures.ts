// The arithmetic of `npm run bench:instructions`: a window's count, less what the process
// does when idle over as long, shared out over the work the window did.

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
