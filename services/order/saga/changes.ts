import { announcements } from "../../platform/announcements.js";

/**
 * Who hears that orders changed status: the process's OrderWatch, which passes the ids on to
 * the WatchOrder streams of every replica over core NATS (`orderChangesSubject`). A registry
 * like the outbox's hand-over, so the code that writes transitions needs no handle on it.
 *
 * Not Postgres NOTIFY: Postgres signals every backend LISTENing in the database on each
 * committing NOTIFY, whatever its channel, and each of them reads the whole notification
 * queue — every transition woke the relay's and notification's listeners too. A NATS subject
 * per order reaches only the processes watching that order.
 */
const orderChanges = announcements<string>();

/** Calls `listener` with the ids of orders whose status changed (after the change committed). Returns the unregistration. */
export const onOrdersChanged = orderChanges.listen;

/** Announces committed status changes. */
export const ordersChanged = orderChanges.announce;

/** The core NATS subject (no stream captures it) on which an order's changes are announced. */
export function orderChangesSubject(orderId: string): string {
  return `orderflow.order-changed.${orderId}`;
}
