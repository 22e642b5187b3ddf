import { LRUCache } from "lru-cache";
import type { Order } from "../../gen/orderflow/order/v1/order_pb.js";
import { counter } from "../platform/metrics.js";
import { isTerminal } from "./domain/status.js";
import type { ChangeSubscriber } from "./saga/watch.js";

const lookups = counter("orderflow_order_local_cache_lookups_total", "GetOrder in-process cache lookups by result", ["result"]);

/** Longer than any read of an order can take (the pool waits at most 5 s for a connection). */
const NOTICE_MEMORY_MS = 60_000;

/**
 * In-process copy of terminal orders, in front of the Redis cache (OrderCache): a hit
 * costs no round trip at all. Every order change reaches every replica as an
 * `order_changed` notice (OrderWatch); a notice drops the order's copy, and a read that
 * started before the latest notice of its order may not store what it read, so a copy
 * never outlives a change it could have missed. Another replica's change is seen here
 * when its notice arrives (milliseconds); this replica's own cancel drops the copy as
 * soon as it commits (`changed`).
 */
export class LocalOrderCache implements ChangeSubscriber {
  private readonly orders: LRUCache<string, Order>;
  /** When the last change notice of each recently changed order arrived. */
  private readonly notices = new LRUCache<string, number>({ max: 100_000, ttl: NOTICE_MEMORY_MS });
  /** Reads that started before this (a lost LISTEN connection) may not store anything. */
  private clearedAt = 0;
  /** Off while change notices cannot be heard. */
  private hearing = true;

  constructor(max: number, ttlMs: number) {
    this.orders = new LRUCache<string, Order>({ max: Math.max(1, max), ttl: ttlMs });
  }

  get(orderId: string): Order | undefined {
    const order = this.hearing ? this.orders.get(orderId) : undefined;
    lookups.inc({ result: order ? "hit" : "miss" });
    return order;
  }

  /** Stores a terminal order read at `readStartedAt` (performance.now()), unless a change may have overtaken it. */
  offer(order: Order, readStartedAt: number): void {
    if (!this.hearing || !isTerminal(order.status) || readStartedAt <= this.clearedAt) return;
    const notice = this.notices.get(order.orderId);
    if (notice !== undefined && readStartedAt <= notice) return;
    this.orders.set(order.orderId, order);
  }

  /** The order changed (or is about to): drop its copy and refuse reads already under way. */
  changed(orderId: string): void {
    this.notices.set(orderId, performance.now());
    this.orders.delete(orderId);
  }

  /** Notices cannot be heard: serve and store nothing until `listening`. */
  deaf(): void {
    this.hearing = false;
    this.orders.clear();
  }

  /** Notices are heard again: start afresh, refusing reads that started while deaf. */
  listening(): void {
    this.clearedAt = performance.now();
    this.orders.clear();
    this.hearing = true;
  }
}
