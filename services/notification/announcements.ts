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
const listeners = new Set<(rows: readonly NotificationRow[]) => void>();

/** Calls `listener` with the notifications recorded by a transaction, once it has committed. Returns the unregistration. */
export function onNotificationsCreated(listener: (rows: readonly NotificationRow[]) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Announces committed notifications. */
export function notificationsCreated(rows: readonly NotificationRow[]): void {
  if (rows.length === 0) return;
  for (const listener of listeners) listener(rows);
}

/**
 * The core NATS subject (no stream captures it) on which a customer's new notifications are
 * announced. Customer ids may hold characters a subject token cannot ('.', '*', '>', spaces),
 * so the token is the id in base64url.
 */
export function createdSubject(customerId: string): string {
  return `orderflow.notification-created.${Buffer.from(customerId, "utf8").toString("base64url") || "-"}`;
}
