/**
 * Runs `task` every `intervalMs`, one pass at a time (a tick that finds the last pass still
 * running is skipped), without keeping the process alive; a failed pass goes to `failed`.
 * Returns what stops it.
 */
export function runPeriodically(intervalMs: number, task: () => Promise<void>, failed: (err: unknown) => void): () => void {
  let running = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = true;
    task()
      .catch(failed)
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
