import { EventEmitter, on } from "node:events";
import type pg from "pg";
import type { Order } from "../../../gen/orderflow/order/v1/order_pb.js";
import type { Database } from "../../platform/db.js";
import { errorMessage } from "../../platform/errors.js";
import type { Worker } from "../../platform/host.js";
import type { Logger } from "../../platform/logger.js";
import { isTerminal } from "../domain/status.js";
import { readOrder } from "../store.js";

/**
 * Streams an order's changes to WatchOrder callers. Every transition sends
 * pg_notify('order_changed', id) on commit, so a watcher on any replica hears
 * changes made by any other; one LISTEN connection per process fans them out.
 */
export class OrderWatch implements Worker {
  private readonly changes = new EventEmitter();
  private client: pg.PoolClient | undefined;
  private stopped = false;

  constructor(private readonly db: Database, private readonly logger: Logger) {
    this.changes.setMaxListeners(0);
  }

  async start(): Promise<this> {
    await this.listen();
    return this;
  }

  private async listen(): Promise<void> {
    const client = await this.db.primary.connect();
    this.client = client;
    client.on("notification", (n) => {
      if (n.payload) this.changes.emit(n.payload);
    });
    client.on("error", (error) => {
      this.logger.warn("order watch connection lost", { error: errorMessage(error) });
      client.release(error);
      if (!this.stopped) setTimeout(() => void this.listen().catch(() => undefined), 1_000);
    });
    await client.query("LISTEN order_changed");
    // A change made while we were not listening would be missed: wake every watcher to re-read.
    for (const orderId of this.changes.eventNames()) if (typeof orderId === "string" && orderId !== "stop") this.changes.emit(orderId);
  }

  /** Ends every open watch stream (shutdown). */
  endStreams(): void {
    this.changes.emit("stop");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.endStreams();
    this.client?.release();
  }

  /** The order now, then each new version until it is terminal or the caller goes away. */
  async *watch(orderId: string, signal: AbortSignal): AsyncGenerator<Order> {
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    this.changes.once("stop", onAbort);
    // One event name per order: a change wakes only that order's watchers.
    const events = on(this.changes, orderId, { signal: stop.signal });
    try {
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
      signal.removeEventListener("abort", onAbort);
      this.changes.off("stop", onAbort);
    }
  }
}
