// When a supervised service that exited unexpectedly is started again: at once
// would spin on a service that dies at start (a bad setting, a database that
// refuses it), so each crash in a row doubles the wait, as Kubernetes backs off
// a crash-looping pod; one that stayed up long enough starts the count afresh.

export interface RestartPolicy {
  /** The wait before the first restart after a crash. */
  initialDelayMs: number;
  /** The longest wait, however many crashes in a row. */
  maxDelayMs: number;
  /** A process that ran at least this long before it crashed was not crash-looping. */
  resetAfterMs: number;
}

/** `npm start`'s: 1 s, 2 s, 4 s … 30 s; a minute up forgives the crashes before. */
export const npmStartRestarts: RestartPolicy = { initialDelayMs: 1_000, maxDelayMs: 30_000, resetAfterMs: 60_000 };

/** Counts one service's crashes in a row and says how long to wait before starting it again. */
export class CrashLoop {
  private crashesInARow = 0;

  constructor(private readonly policy: RestartPolicy) {}

  /** Records a crash of a process that had run for `uptimeMs`; returns the wait before the restart. */
  crashed(uptimeMs: number): number {
    this.crashesInARow = uptimeMs >= this.policy.resetAfterMs ? 1 : this.crashesInARow + 1;
    return Math.min(this.policy.maxDelayMs, this.policy.initialDelayMs * 2 ** (this.crashesInARow - 1));
  }
}
