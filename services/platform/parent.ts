/**
 * Calls `gone` once the process `parentPid` is no longer this one's parent (it died, and the
 * orphan was handed to another), checking every `everyMs`. The timer keeps nothing alive.
 */
export function whenParentDies(parentPid: number, gone: () => void, everyMs = 1_000): void {
  const timer = setInterval(() => {
    if (process.ppid === parentPid) return;
    clearInterval(timer);
    gone();
  }, everyMs);
  timer.unref();
}
