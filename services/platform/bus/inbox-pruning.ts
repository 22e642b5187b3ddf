import type { Pool } from "pg";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { pruneInbox } from "./sql.js";

/**
 * Deletes a consumer's inbox rows older than `retentionMs` once a minute (one pass at a time;
 * replicas take turns through an advisory lock). Returns what stops it.
 */
export function startInboxPruning(options: { pool: Pool; schema: string; consumer: string; retentionMs: number; log: Logger }): () => void {
  const { pool, schema, consumer, retentionMs, log } = options;
  let running = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = true;
    pruneInbox(pool, schema, consumer, retentionMs)
      .then((n) => {
        if (n > 0) log.debug("inbox pruned", { consumer, rows: n });
      })
      .catch((err: unknown) => log.warn("inbox pruning failed", { consumer, error: errorMessage(err) }))
      .finally(() => {
        running = false;
      });
  }, 60_000);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
