// The frame of a bench entry point: cleanups run in reverse on success, on failure and on
// SIGINT/SIGTERM; a usage or infrastructure error is one line, anything else its stack.
import { InfraError } from "../tools/infra-error.js";
import { log } from "./log.js";
import { UsageError } from "./options.js";

export type Cleanups = (() => Promise<void>)[];

export function runBenchMain(body: (cleanups: Cleanups) => Promise<void>, command = "npm run bench"): void {
  const cleanups: Cleanups = [];
  /** The signal that stopped the run, if one did: what fails after it is its doing, not an error to report. */
  let stoppedBy: NodeJS.Signals | undefined;
  // One cleanup, awaited by whoever asks: a signal's, and the run's own as it fails for the lack of what the signal stopped.
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const step of cleanups.splice(0).reverse()) await step().catch((error: unknown) => log(`cleanup: ${String(error)}`));
    })());
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      if (stoppedBy) return;
      stoppedBy = signal;
      log(`${signal}: stopping…`);
      void cleanup().then(() => process.exit(130));
    });
  }
  body(cleanups)
    .finally(cleanup)
    .then(
      () => process.exit(0),
      (error: unknown) => {
        if (stoppedBy) process.exit(130);
        const message = error instanceof UsageError || error instanceof InfraError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
        process.stderr.write(`${command}: ${message}\n`);
        process.exit(error instanceof UsageError ? 2 : 1);
      },
    );
}
