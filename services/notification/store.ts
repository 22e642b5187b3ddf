import { create } from "@bufbuild/protobuf";
import { z } from "zod";
import { type Notification, NotificationSchema } from "../../gen/orderflow/notification/v1/notification_pb.js";
import type { OrderConcluded } from "../../gen/orderflow/order/v1/events_pb.js";
import { afterCommit, type Database, type PoolClient, prepared } from "../platform/db.js";
import { timeOrderedId } from "../platform/ids.js";
import { beforePosition } from "../platform/paging.js";
import { timestamp } from "../platform/time.js";
import { notificationsCreated } from "./announcements.js";
import { isKindName, type KindName, kindNames, kindOf, outcomeMessage } from "./outcome.js";

/** A notification as stored. */
export const notificationRow = z.object({
  notification_id: z.string(),
  seq: z.coerce.string(),
  customer_id: z.string(),
  order_id: z.string(),
  kind: z.string().refine(isKindName, "a notification kind"),
  message: z.string(),
  created_at: z.coerce.date(),
});
export type NotificationRow = z.infer<typeof notificationRow>;

export function toNotification(row: NotificationRow): Notification {
  return create(NotificationSchema, {
    notificationId: row.notification_id,
    customerId: row.customer_id,
    orderId: row.order_id,
    kind: isKindName(row.kind) ? kindNames[row.kind] : 0,
    message: row.message,
    createdAt: timestamp(row.created_at),
  });
}

export class NotAnOutcome extends Error {
  override name = "NotAnOutcome";
}

const columns = "notification_id, seq, customer_id, order_id, kind, message, created_at";

/**
 * Records the notification of an order outcome inside the caller's transaction (the
 * consumer's batch transaction) and announces it once the transaction commits
 * (`notificationsCreated`; never if it rolls back). Returns the new row, or undefined when
 * this order already has a notification of this kind.
 */
export async function recordOutcome(tx: PoolClient, event: OrderConcluded): Promise<NotificationRow | undefined> {
  return (await recordOutcomes(tx, [event]))[0];
}

/** The notification kind of an order outcome; NotAnOutcome for any other status. */
export function outcomeKind(event: OrderConcluded): KindName {
  const kind = kindOf(event.status);
  if (!kind) throw new NotAnOutcome(`order ${event.orderId}: status ${event.status} is not an order outcome`);
  return kind;
}

/** `recordOutcome` for many events in one statement; the results are in the events' order. */
export async function recordOutcomes(tx: PoolClient, events: readonly OrderConcluded[]): Promise<(NotificationRow | undefined)[]> {
  if (events.length === 0) return [];
  const kinds = events.map(outcomeKind);
  const { rows } = await tx.query<Record<string, unknown>>(
    prepared(
      `WITH inserted AS (
         INSERT INTO notifications (notification_id, customer_id, order_id, kind, message)
         SELECT notification_id, customer_id, order_id, kind, message
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS e(notification_id, customer_id, order_id, kind, message, n)
          ORDER BY n
         ON CONFLICT (order_id, kind) DO NOTHING
         RETURNING ${columns}
       )
       SELECT ${columns} FROM inserted ORDER BY seq`,
      [events.map(() => timeOrderedId()), events.map((e) => e.customerId), events.map((e) => e.orderId), kinds, events.map((e, i) => outcomeMessage(e, kinds[i]!))],
    ),
  );
  const created = rows.map((row) => notificationRow.parse(row));
  if (created.length > 0) afterCommit(tx, () => notificationsCreated(created));
  const byKey = new Map(created.map((row) => [`${row.order_id}\u0000${row.kind}`, row]));
  // A repeated (order, kind) in the batch was inserted once: only its first event gets the row.
  return events.map((event, i) => {
    const key = `${event.orderId}\u0000${kinds[i]}`;
    const row = byKey.get(key);
    byKey.delete(key);
    return row;
  });
}

export class NotificationStore {
  constructor(private readonly db: Database) {}

  /** A customer's notifications, newest first, before position `beforeSeq`. */
  async list(customerId: string, limit: number, beforeSeq: string | undefined): Promise<NotificationRow[]> {
    const { rows } = await this.db.replica.query<Record<string, unknown>>(
      prepared(`SELECT ${columns} FROM notifications WHERE customer_id = $1 AND seq < ${beforePosition("$2::bigint")} ORDER BY seq DESC LIMIT $3`, [customerId, beforeSeq ?? null, limit]),
    );
    return rows.map((row) => notificationRow.parse(row));
  }

  /**
   * Notifications of the customers created since `since` (what announcements may have missed),
   * among those numbered after `afterSeq` (see RecentNotifications): an index range scan from
   * there rather than through every notification the customers ever got.
   */
  async createdSince(customerIds: string[], since: Date, afterSeq: string): Promise<NotificationRow[]> {
    const { rows } = await this.db.primary.query<Record<string, unknown>>(
      prepared(`SELECT ${columns} FROM notifications WHERE customer_id = ANY($1::text[]) AND seq > $3::bigint AND created_at >= $2 ORDER BY seq`, [customerIds, since, afterSeq]),
    );
    return rows.map((row) => notificationRow.parse(row));
  }

  /** Postgres's time and the newest notification number it sees. */
  async mark(): Promise<{ at: Date; seq: string }> {
    const { rows } = await this.db.primary.query<{ at: Date; seq: string }>(prepared("SELECT now() AS at, coalesce(max(seq), 0)::text AS seq FROM notifications", []));
    const mark = rows[0];
    if (!mark) throw new Error("SELECT max(seq) returned no row");
    return mark;
  }
}
