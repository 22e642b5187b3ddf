import type { SagaOrder } from "./state.js";

/**
 * The orders this replica has just written, as they now stand, each with the saga revision its
 * write left: the next reply to one of them is decided without reading it back. The write that
 * applies the reply stays guarded by that revision, so an order whose saga moved on elsewhere
 * since (a cancellation, a timed-out step, another replica) is never overwritten: its write
 * fails, and the reply is decided again on the order read from Postgres. Orders whose
 * saga has nothing left to await are dropped; the oldest go first beyond `capacity`.
 */
export class InFlightOrders {
  private readonly orders = new Map<string, SagaOrder>();

  constructor(private readonly capacity = 20_000) {}

  get(orderId: string): SagaOrder | undefined {
    return this.orders.get(orderId);
  }

  /** Keeps the order as written (its `revision` the one the write left) while it awaits a reply. */
  remember(order: SagaOrder): void {
    this.orders.delete(order.orderId);
    if (order.awaiting.length === 0) return;
    this.orders.set(order.orderId, order);
    if (this.orders.size > this.capacity) {
      const oldest = this.orders.keys().next();
      if (!oldest.done) this.orders.delete(oldest.value);
    }
  }

  forget(orderId: string): void {
    this.orders.delete(orderId);
  }

  get size(): number {
    return this.orders.size;
  }
}
