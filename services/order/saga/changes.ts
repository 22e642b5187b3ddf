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
const listeners = new Set<(orderIds: readonly string[]) => void>();

/** Calls `listener` with the ids of orders whose status changed (after the change committed). Returns the unregistration. */
export function onOrdersChanged(listener: (orderIds: readonly string[]) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Announces committed status changes. */
export function ordersChanged(orderIds: readonly string[]): void {
  if (orderIds.length === 0) return;
  for (const listener of listeners) listener(orderIds);
}

/** The core NATS subject (no stream captures it) on which an order's changes are announced. */
export function orderChangesSubject(orderId: string): string {
  return `orderflow.order-changed.${orderId}`;
}
