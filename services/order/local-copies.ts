import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { LRUCache } from "lru-cache";
import { counter } from "../platform/metrics.js";
import type { Worker } from "../platform/host.js";
import type { GetOrderAnswer } from "./response-encoding.js";

const evictions = counter("orderflow_order_local_cache_evictions_total", "Local order copies dropped, by cause", ["cause"]);

/** The core NATS subject on which a replica about to change a cached order tells every replica to drop its copy. */
export const orderEvictionSubject = "orderflow.order-cache.evict";

export interface LocalCopiesOptions {
  /**
   * Longest a copy is served: bounds how stale a replica whose NATS connection died unnoticed
   * can be. 0 keeps no copies (evictions are still announced, for the replicas that do).
   */
  ttlMs: number;
  maxEntries: number;
  /** How long an eviction may take to reach the NATS server before the change is refused. */
  evictTimeoutMs?: number;
}

/**
 * This process's copies of cached orders' GetOrder answers, encoded, so a GetOrder of a hot order needs no
 * Redis round trip. Only terminal orders are cached, and the one change such an order still
 * sees (the cancel of a CONFIRMED order) first calls `evictEverywhere`, which drops the copy
 * here and has NATS confirm it took the eviction for every other replica. Core NATS delivers
 * at most once, to connected subscribers: every copy is dropped when the connection drops,
 * and none is served longer than `ttlMs`.
 */
export class LocalOrderCopies implements Worker {
  private readonly copies: LRUCache<string, GetOrderAnswer>;
  /** lru-cache reads a ttl of 0 as "no expiry": with 0, nothing is kept. */
  private readonly keeps: boolean;
  /** Counts evictions heard: a copy read before one is not kept (it may be the evicted version). */
  private generation = 0;
  private readonly subscription: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: LocalCopiesOptions,
  ) {
    this.keeps = options.ttlMs > 0;
    this.copies = new LRUCache({ max: options.maxEntries, ttl: options.ttlMs, ttlAutopurge: false });
    this.subscription = nc.subscribe(orderEvictionSubject, {
      callback: (error, msg) => {
        if (!error) this.forget(msg.string(), "announced");
      },
    });
    void this.followConnection();
  }

  /** Resolves once NATS has the subscription: evictions announced after that are heard. */
  ready(): Promise<void> {
    return this.nc.flush();
  }

  get(orderId: string): GetOrderAnswer | undefined {
    return this.keeps ? this.copies.get(orderId) : undefined;
  }

  /** Taken before reading an order elsewhere; `keep` stores the copy only if no eviction was heard since. */
  mark(): number {
    return this.generation;
  }

  keep(orderId: string, answer: GetOrderAnswer, mark: number): void {
    if (this.keeps && mark === this.generation) this.copies.set(orderId, answer);
  }

  /** Drops the order's copy here and in every replica; false if NATS did not confirm in time. */
  async evictEverywhere(orderId: string): Promise<boolean> {
    this.forget(orderId, "changed");
    try {
      this.nc.publish(orderEvictionSubject, orderId);
      return await Promise.race([this.nc.flush().then(() => true), sleep(this.options.evictTimeoutMs ?? 2_000, false, { ref: false })]);
    } catch {
      return false;
    }
  }

  private forget(orderId: string, cause: "announced" | "changed"): void {
    this.generation += 1;
    if (this.copies.delete(orderId)) evictions.inc({ cause });
  }

  private async followConnection(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type !== "disconnect" && status.type !== "reconnect") continue;
      this.generation += 1;
      evictions.inc({ cause: "disconnected" }, this.copies.size);
      this.copies.clear();
    }
  }

  async stop(): Promise<void> {
    this.subscription.unsubscribe();
    this.copies.clear();
  }
}
