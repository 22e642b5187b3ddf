import { EventEmitter, on } from "node:events";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Order } from "../../../gen/orderflow/order/v1/order_pb.js";
import type { Database } from "../../platform/db.js";
import type { Worker } from "../../platform/host.js";
import { SharedSubscriptions } from "../../platform/shared-subscriptions.js";
import { isTerminal } from "../domain/status.js";
import { readOrder } from "../store.js";
import { onOrdersChanged, orderChangesSubject } from "./changes.js";

/** How often a watched order is read again whatever was heard: a change announced while NATS was unreachable is lost. */
const RECHECK_MS = 5_000;

/**
 * Streams an order's changes to WatchOrder callers. The process's committed status changes
 * are announced on core NATS, one subject per order (`orderChangesSubject`), so a watcher on
 * any replica hears changes made by any other; the process subscribes to an order's subject
 * while it has watchers of that order. Core NATS delivers at most once, so every watched
 * order is also read again every few seconds.
 */
export class OrderWatch implements Worker {
  private readonly changes = new EventEmitter();
  /** Each watched order's subject, subscribed once for all its watchers. */
  private readonly subscriptions: SharedSubscriptions;
  private readonly unregister: () => void;
  private readonly recheck: NodeJS.Timeout;
  /** Shutting down: streams opened from now on end at once. */
  private closed = false;

  constructor(
    private readonly db: Database,
    private readonly nc: NatsConnection,
  ) {
    this.changes.setMaxListeners(0);
    this.subscriptions = new SharedSubscriptions(nc, orderChangesSubject, (orderId) => void this.changes.emit(orderId));
    this.unregister = onOrdersChanged((orderIds) => {
      // Told after the change committed: a notice that cannot go out (the connection is closed
      // or draining) must not fail the write; watchers read the order again within RECHECK_MS.
      try {
        for (const orderId of orderIds) this.nc.publish(orderChangesSubject(orderId));
      } catch {
        return;
      }
    });
    this.recheck = setInterval(() => {
      for (const orderId of this.subscriptions.keys()) this.changes.emit(orderId);
    }, RECHECK_MS);
    this.recheck.unref();
  }

  /** Ends every open watch stream (shutdown). */
  endStreams(): void {
    this.closed = true;
    this.changes.emit("stop");
  }

  async stop(): Promise<void> {
    this.unregister();
    clearInterval(this.recheck);
    this.endStreams();
  }

  /** The order now, then each new version until it is terminal or the caller goes away. */
  async *watch(orderId: string, signal: AbortSignal): AsyncGenerator<Order> {
    // Opened after shutdown began (a connection the drain has not closed yet): the order as it
    // is, and no waiting that would hold the drain.
    if (this.closed) {
      const now = await readOrder(this.db.primary, orderId);
      if (now) yield now;
      return;
    }
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    this.changes.once("stop", onAbort);
    // One event name per order: a change wakes only that order's watchers.
    const events = on(this.changes, orderId, { signal: stop.signal });
    try {
      await this.subscriptions.acquire(orderId);
      let last = await readOrder(this.db.primary, orderId);
      if (!last) return;
      yield last;
      if (isTerminal(last.status)) return;
      for await (const _ of events) {
        const current = await readOrder(this.db.primary, orderId);
        if (!current || current.version <= last.version) continue;
        last = current;
        yield current;
        if (isTerminal(current.status)) return;
      }
    } catch (error) {
      if (!stop.signal.aborted) throw error;
    } finally {
      // Takes the order's listener off `changes` also when the stream ended before iterating it.
      stop.abort();
      this.subscriptions.release(orderId);
      signal.removeEventListener("abort", onAbort);
      this.changes.off("stop", onAbort);
    }
  }
}
