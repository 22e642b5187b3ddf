import { type Database, prepared } from "../platform/db.js";
import type { Logger } from "../platform/logger.js";
import { counter } from "../platform/metrics.js";
import { deleteInChunks, firstIdOf, startRetention } from "../platform/retention.js";

const deleted = counter("orderflow_orders_deleted_total", "Concluded orders deleted, with their lines and history, past ORDER_RETENTION_DAYS", []);

/**
 * Deletes, `chunk` orders a statement until none is left, the orders created before `before`
 * that have concluded (CONFIRMED, REJECTED or CANCELLED, no step awaited), with their lines and
 * history. Rows another transaction holds are skipped. Returns how many orders went.
 */
export function deleteConcludedOrders(db: Pick<Database, "background">, before: Date, chunk = 1_000): Promise<number> {
  return deleteInChunks(chunk, async () => {
    const { rows } = await db.background.query<{ n: number }>(
      prepared(
        `WITH doomed AS (
           SELECT order_id FROM orders
            WHERE order_id < $1::uuid AND created_at < $2 AND NOT in_flight AND status IN ('CONFIRMED', 'REJECTED', 'CANCELLED')
            ORDER BY order_id LIMIT $3 FOR UPDATE SKIP LOCKED
         ), lines AS (
           DELETE FROM order_items i USING doomed d WHERE i.order_id = d.order_id
         ), history AS (
           DELETE FROM order_history h USING doomed d WHERE h.order_id = d.order_id
         ), gone AS (
           DELETE FROM orders o USING doomed d WHERE o.order_id = d.order_id RETURNING 1
         )
         SELECT count(*)::int AS n FROM gone`,
        [firstIdOf(before), before, chunk],
      ),
    );
    const n = rows[0]?.n ?? 0;
    deleted.inc(n);
    return n;
  });
}

/**
 * Deletes the orders concluded and created more than `retentionDays` ago, a minute after start
 * and then hourly, while `active()` says so (the replica whose outbox relay leads); 0 days keeps
 * every order. Returns what stops it.
 */
export function startOrderRetention(options: { db: Pick<Database, "background">; retentionDays: number; firstAfterMs?: number; active: () => boolean; logger: Logger }): () => void {
  return startRetention({ ...options, what: "concluded orders", deleteBefore: (before) => deleteConcludedOrders(options.db, before) });
}
