import { type Database, prepared } from "../platform/db.js";
import { errorMessage } from "../platform/errors.js";
import type { Logger } from "../platform/logger.js";
import { counter } from "../platform/metrics.js";
import { runPeriodically } from "../platform/periodic.js";

const deleted = counter("orderflow_orders_deleted_total", "Concluded orders deleted, with their lines and history, past ORDER_RETENTION_DAYS", []);

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * The smallest UUIDv7 of the millisecond `at`: order ids (`timeOrderedId`) made before it sort
 * below it, so the primary key finds the orders older than a time without an index of their own.
 */
export function firstIdOf(at: Date): string {
  const hex = at.getTime().toString(16).padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/**
 * Deletes, `chunk` orders a statement until none is left, the orders created before `before`
 * that have concluded (CONFIRMED, REJECTED or CANCELLED, no step awaited), with their lines and
 * history. Rows another transaction holds are skipped. Returns how many orders went.
 */
export async function deleteConcludedOrders(db: Pick<Database, "background">, before: Date, chunk = 1_000): Promise<number> {
  let total = 0;
  for (;;) {
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
    total += n;
    if (n > 0) deleted.inc(n);
    if (n < chunk) return total;
  }
}

/**
 * Every `intervalMs` (default an hour), the first time a minute after start so that a replica
 * that lives less than an interval does its part too, while `active()` says so: deletes the
 * orders concluded and created more than `retentionDays` ago; 0 days keeps every order.
 * Returns what stops it.
 */
export function startOrderRetention(options: { db: Pick<Database, "background">; retentionDays: number; intervalMs?: number; firstAfterMs?: number; active: () => boolean; logger: Logger }): () => void {
  const { db, retentionDays, logger } = options;
  if (retentionDays === 0) return () => undefined;
  return runPeriodically(
    options.intervalMs ?? 60 * 60 * 1000,
    async () => {
      if (!options.active()) return;
      const n = await deleteConcludedOrders(db, new Date(Date.now() - retentionDays * DAY_MS));
      if (n > 0) logger.info("deleted concluded orders past their retention", { orders: n, retention_days: retentionDays });
    },
    (err) => logger.warn("order retention failed", { error: errorMessage(err) }),
    options.firstAfterMs ?? 60_000,
  );
}
