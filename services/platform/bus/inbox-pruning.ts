import type { Pool } from "pg";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { runPeriodically } from "../periodic.js";
import { pruneInbox } from "./sql.js";

/**
 * Deletes a consumer's inbox rows older than `retentionMs` once a minute (one pass at a time;
 * replicas take turns through an advisory lock). Returns what stops it.
 */
export function startInboxPruning(options: { pool: Pool; schema: string; consumer: string; retentionMs: number; log: Logger }): () => void {
  const { pool, schema, consumer, retentionMs, log } = options;
  return runPeriodically(
    60_000,
    async () => {
      const n = await pruneInbox(pool, schema, consumer, retentionMs);
      if (n > 0) log.debug("inbox pruned", { consumer, rows: n });
    },
    (err) => log.warn("inbox pruning failed", { consumer, error: errorMessage(err) }),
  );
}
