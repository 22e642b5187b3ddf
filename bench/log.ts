import { performance } from "node:perf_hooks";

const began = performance.now();

/** A line of the bench's progress on stderr, stamped with the seconds since the run began. */
export function log(message: string): void {
  process.stderr.write(`bench | ${((performance.now() - began) / 1000).toFixed(1).padStart(5)}s  ${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
