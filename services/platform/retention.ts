import { errorMessage } from "./errors.js";
import type { Logger } from "./logger.js";
import { runPeriodically } from "./periodic.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * The smallest UUIDv7 of the millisecond `at`: ids made before it (`timeOrderedId`) sort below
 * it, so a primary key of such ids finds the rows older than a time without an index of their own.
 */
export function firstIdOf(at: Date): string {
  const hex = at.getTime().toString(16).padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/** Runs `deleteChunk` (up to `chunk` rows a call) until a call deletes fewer; returns how many rows went in all. */
export async function deleteInChunks(chunk: number, deleteChunk: () => Promise<number>): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await deleteChunk();
    total += n;
    if (n < chunk) return total;
  }
}

export interface RetentionOptions {
  /** What goes, for the log: "concluded orders". */
  what: string;
  /** Rows older than this many days go; 0 keeps them all (nothing runs). */
  retentionDays: number;
  /** Deletes what is older than `before`; returns how many rows went. */
  deleteBefore: (before: Date) => Promise<number>;
  /** Whether this replica deletes now (default always: the deletes must then be safe side by side). */
  active?: () => boolean;
  /** Between passes (default an hour). */
  intervalMs?: number;
  /** Before the first pass (default a minute), so that a replica that lives less than an interval does its part. */
  firstAfterMs?: number;
  logger: Logger;
}

/** Deletes, pass after pass, what is older than the retention. Returns what stops it. */
export function startRetention(options: RetentionOptions): () => void {
  const { what, retentionDays, logger } = options;
  if (retentionDays === 0) return () => undefined;
  const active = options.active ?? (() => true);
  return runPeriodically(
    options.intervalMs ?? 60 * 60 * 1000,
    async () => {
      if (!active()) return;
      const n = await options.deleteBefore(new Date(Date.now() - retentionDays * DAY_MS));
      if (n > 0) logger.info(`deleted ${what} past their retention`, { rows: n, retention_days: retentionDays });
    },
    (err) => logger.warn(`deleting ${what} past their retention failed`, { error: errorMessage(err) }),
    options.firstAfterMs ?? 60_000,
  );
}
