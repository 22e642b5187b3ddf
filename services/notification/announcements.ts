import { announcements } from "../platform/announcements.js";
import type { NotificationRow } from "./store.js";

/**
 * Who hears of notifications once they are committed: the process's announcer
 * (`announceOverNats`), which passes them on to the WatchNotifications streams of every
 * replica over core NATS. A registry like the order service's change notices, so the code
 * that records notifications needs no handle on the connection.
 *
 * Not Postgres NOTIFY: Postgres wakes every backend LISTENing in the database on each
 * committing NOTIFY, whatever its channel — every notification woke the order relay's
 * listener too — and a LISTEN connection per replica cannot go through a transaction pooler.
 */
const created = announcements<NotificationRow>();

/** Calls `listener` with the notifications recorded by a transaction, once it has committed. Returns the unregistration. */
export const onNotificationsCreated = created.listen;

/** Announces committed notifications. */
export const notificationsCreated = created.announce;

/**
 * The core NATS subject (no stream captures it) on which a customer's new notifications are
 * announced. Customer ids may hold characters a subject token cannot ('.', '*', '>', spaces),
 * so the token is the id in base64url.
 */
export function createdSubject(customerId: string): string {
  return `orderflow.notification-created.${Buffer.from(customerId, "utf8").toString("base64url") || "-"}`;
}
