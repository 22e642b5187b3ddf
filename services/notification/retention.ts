import { type Database, prepared } from "../platform/db.js";
import type { Logger } from "../platform/logger.js";
import { deleteInChunks, firstIdOf, startRetention } from "../platform/retention.js";
import { notificationMetrics } from "./metrics.js";

/**
 * Deletes, `chunk` a statement until none is left, the notifications recorded before `before`,
 * found through their UUIDv7 ids; rows another replica is deleting are skipped. Returns how
 * many went.
 */
export function deleteNotifications(db: Pick<Database, "background">, before: Date, chunk = 1_000): Promise<number> {
  return deleteInChunks(chunk, async () => {
    const { rows } = await db.background.query<{ n: number }>(
      prepared(
        `WITH doomed AS (
           SELECT notification_id FROM notifications WHERE notification_id < $1::uuid AND created_at < $2
            ORDER BY notification_id LIMIT $3 FOR UPDATE SKIP LOCKED
         ), gone AS (
           DELETE FROM notifications n USING doomed d WHERE n.notification_id = d.notification_id RETURNING 1
         )
         SELECT count(*)::int AS n FROM gone`,
        [firstIdOf(before), before, chunk],
      ),
    );
    const n = rows[0]?.n ?? 0;
    notificationMetrics.deleted.inc(n);
    return n;
  });
}

/** Deletes the notifications older than `retentionDays`, a minute after start and then hourly, from every replica; 0 days keeps them all. */
export function startNotificationRetention(options: { db: Pick<Database, "background">; retentionDays: number; logger: Logger }): () => void {
  return startRetention({ ...options, what: "notifications", deleteBefore: (before) => deleteNotifications(options.db, before) });
}
