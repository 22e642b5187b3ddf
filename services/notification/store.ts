import { create } from "@bufbuild/protobuf";
import { z } from "zod";
import { type Notification, NotificationSchema } from "../../gen/orderflow/notification/v1/notification_pb.js";
import type { OrderConcluded } from "../../gen/orderflow/order/v1/events_pb.js";
import { type Database, prepared, type Queryable } from "../platform/db.js";
import { timestamp } from "../platform/time.js";
import { isKindName, kindNames, kindOf, outcomeMessage } from "./outcome.js";

/** NOTIFY channel a schema's new notifications are announced on (`notification_created` for the service's schema). */
export function createdChannel(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(schema)) throw new Error(`invalid schema name "${schema}"`);
  return `${schema}_created`;
}

/** A notification as stored, and as announced by NOTIFY (JSON, same field names). */
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
 * consumer's batch transaction, with its inbox rows) and announces it with NOTIFY, which
 * Postgres delivers to listeners only if the transaction commits. Returns the new row,
 * or undefined when this order already has a notification of this kind.
 */
export async function recordOutcome(tx: Queryable, event: OrderConcluded, channel: string): Promise<NotificationRow | undefined> {
  const kind = kindOf(event.status);
  if (!kind) throw new NotAnOutcome(`order ${event.orderId}: status ${event.status} is not an order outcome`);
  const { rows } = await tx.query<Record<string, unknown>>(
    prepared(
      `WITH inserted AS (
         INSERT INTO notifications (customer_id, order_id, kind, message) VALUES ($1, $2, $3, $4)
         ON CONFLICT (order_id, kind) DO NOTHING
         RETURNING ${columns}
       )
       SELECT ${columns}, pg_notify($5, json_build_object(
         'notification_id', notification_id, 'seq', seq::text, 'customer_id', customer_id, 'order_id', order_id,
         'kind', kind, 'message', message, 'created_at', created_at)::text) AS notified
       FROM inserted`,
      [event.customerId, event.orderId, kind, outcomeMessage(event, kind), channel],
    ),
  );
  return rows[0] === undefined ? undefined : notificationRow.parse(rows[0]);
}

export class NotificationStore {
  constructor(private readonly db: Database) {}

  /** A customer's notifications, newest first, before position `beforeSeq`. */
  async list(customerId: string, limit: number, beforeSeq: string | undefined): Promise<NotificationRow[]> {
    const { rows } = await this.db.replica.query<Record<string, unknown>>(
      `SELECT ${columns} FROM notifications WHERE customer_id = $1 AND ($2::bigint IS NULL OR seq < $2::bigint) ORDER BY seq DESC LIMIT $3`,
      [customerId, beforeSeq ?? null, limit],
    );
    return rows.map((row) => notificationRow.parse(row));
  }

  /** Notifications of the customers created since `since` (catch-up after the listener lost its connection). */
  async createdSince(customerIds: string[], since: Date): Promise<NotificationRow[]> {
    const { rows } = await this.db.primary.query<Record<string, unknown>>(
      `SELECT ${columns} FROM notifications WHERE customer_id = ANY($1::text[]) AND created_at >= $2 ORDER BY seq`,
      [customerIds, since],
    );
    return rows.map((row) => notificationRow.parse(row));
  }
}
