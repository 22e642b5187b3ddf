/**
 * Runs `task` every `intervalMs` (the first time after `firstAfterMs`, by default a whole
 * interval), one pass at a time (a tick that finds the last pass still running is skipped),
 * without keeping the process alive; a failed pass goes to `failed`. Returns what stops it.
 */
export function runPeriodically(intervalMs: number, task: () => Promise<void>, failed: (err: unknown) => void, firstAfterMs = intervalMs): () => void {
  let running = false;
  let stopped = false;
  const tick = () => {
    if (running || stopped) return;
    running = true;
    task()
      .catch(failed)
      .finally(() => {
        running = false;
      });
  };
  let interval: NodeJS.Timeout | undefined;
  const first = setTimeout(() => {
    tick();
    if (!stopped) interval = setInterval(tick, intervalMs).unref();
  }, firstAfterMs);
  first.unref();
  return () => {
    stopped = true;
    clearTimeout(first);
    clearInterval(interval);
  };
}
