import pg from "pg";
import type { Notification } from "../../gen/orderflow/notification/v1/notification_pb.js";
import { errorMessage } from "../platform/errors.js";
import type { Logger } from "../platform/logger.js";
import { notificationMetrics } from "./metrics.js";
import { type NotificationRow, notificationRow, toNotification } from "./store.js";

export interface NotificationHubOptions {
  /** The primary: NOTIFY is not delivered on replicas. */
  connectionString: string;
  channel: string;
  logger: Logger;
  /** Rows of these customers created since a time, to catch up after the listener reconnects. */
  createdSince?: (customerIds: string[], since: Date) => Promise<NotificationRow[]>;
  reconnectDelayMs?: number;
}

/** Catch-up looks this far before the disconnect (created_at is taken at insert, not at commit). */
const catchUpSlackMs = 10_000;

class Subscription {
  private readonly queue: NotificationRow[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  /** Ids recently handed out, so a catch-up after a reconnect never repeats one. */
  private readonly seen = new Set<string>();
  readonly since = new Date();

  constructor(readonly customerId: string) {}

  push(row: NotificationRow): void {
    if (this.ended || this.seen.has(row.notification_id)) return;
    this.seen.add(row.notification_id);
    if (this.seen.size > 1_000) this.seen.delete(this.seen.values().next().value ?? "");
    this.queue.push(row);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  /** The next notification, or undefined once the subscription ended or the signal aborted. */
  async next(signal: AbortSignal): Promise<NotificationRow | undefined> {
    for (;;) {
      const row = this.queue.shift();
      if (row) return row;
      if (this.ended || signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}

/**
 * Fans new notifications out to WatchNotifications streams. One Postgres connection per
 * process LISTENs on the channel; the transaction recording a notification NOTIFYs it on
 * commit, so a watcher connected to any replica sees notifications recorded by any other.
 * NOTIFY is lost while the listener is disconnected: after reconnecting, the hub reads
 * what its watchers' customers got meanwhile (by created_at) and delivers what is new.
 */
export class NotificationHub {
  private client: pg.Client | undefined;
  private readonly subscriptions = new Map<string, Set<Subscription>>();
  private closed = false;
  private disconnectedAt: Date | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private received = 0;

  constructor(private readonly options: NotificationHubOptions) {}

  /** Connects and LISTENs; resolves once notifications are being received. */
  async start(): Promise<void> {
    await this.connect();
  }

  get listening(): boolean {
    return this.client !== undefined;
  }

  /** Announcements received by this process so far (all customers). */
  get announcements(): number {
    return this.received;
  }

  /** Open subscriptions (of one customer, or all). */
  subscriberCount(customerId?: string): number {
    if (customerId !== undefined) return this.subscriptions.get(customerId)?.size ?? 0;
    let n = 0;
    for (const set of this.subscriptions.values()) n += set.size;
    return n;
  }

  /**
   * Each notification for the customer announced from now on, until `signal` aborts or the
   * hub ends its streams. (One committed just before the call may still be announced after
   * it and is then delivered: announcements, not timestamps, decide.)
   */
  async *subscribe(customerId: string, signal: AbortSignal): AsyncGenerator<Notification> {
    if (this.closed) return;
    const sub = new Subscription(customerId);
    let set = this.subscriptions.get(customerId);
    if (!set) this.subscriptions.set(customerId, (set = new Set()));
    set.add(sub);
    notificationMetrics.watchers.inc();
    try {
      for (;;) {
        const row = await sub.next(signal);
        if (!row) return;
        notificationMetrics.deliveryLag.observe(Math.max(0, Date.now() - row.created_at.getTime()) / 1000);
        yield toNotification(row);
      }
    } finally {
      set.delete(sub);
      if (set.size === 0 && this.subscriptions.get(customerId) === set) this.subscriptions.delete(customerId);
    }
  }

  /** Ends every open stream (server shutdown), so in-flight RPCs finish at once; new ones end immediately. */
  endStreams(): void {
    this.closed = true;
    for (const set of this.subscriptions.values()) for (const sub of set) sub.end();
  }

  async close(): Promise<void> {
    this.endStreams();
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.connectionString, application_name: "notification-listener", connectionTimeoutMillis: 5_000, keepAlive: true });
    client.on("notification", (msg) => {
      if (msg.channel === this.options.channel && msg.payload !== undefined) this.dispatch(msg.payload);
    });
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client, new Error("connection ended")));
    await client.connect();
    await client.query(`LISTEN "${this.options.channel}"`);
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
  }

  private dispatch(payload: string): void {
    this.received++;
    let row: NotificationRow;
    try {
      row = notificationRow.parse(JSON.parse(payload));
    } catch (error) {
      this.options.logger.warn("ignoring a malformed notification announcement", { error: errorMessage(error) });
      return;
    }
    for (const sub of this.subscriptions.get(row.customer_id) ?? []) sub.push(row);
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.client !== client || this.closed) return;
    this.client = undefined;
    this.disconnectedAt ??= new Date();
    this.options.logger.warn("notification listener lost its connection; reconnecting", { error: errorMessage(error) });
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    this.reconnectTimer = setTimeout(() => {
      this.connect().then(
        () => {
          notificationMetrics.listenerReconnects.inc();
          this.options.logger.info("notification listener reconnected");
          void this.catchUp();
        },
        (error: unknown) => {
          this.options.logger.warn("notification listener cannot reconnect yet", { error: errorMessage(error) });
          this.scheduleReconnect();
        },
      );
    }, this.options.reconnectDelayMs ?? 1_000);
    this.reconnectTimer.unref();
  }

  private async catchUp(): Promise<void> {
    const since = this.disconnectedAt;
    this.disconnectedAt = undefined;
    const customers = [...this.subscriptions.keys()];
    if (!since || customers.length === 0 || !this.options.createdSince) return;
    try {
      const rows = await this.options.createdSince(customers, new Date(since.getTime() - catchUpSlackMs));
      for (const row of rows) {
        for (const sub of this.subscriptions.get(row.customer_id) ?? []) {
          if (row.created_at.getTime() >= sub.since.getTime() - catchUpSlackMs) sub.push(row);
        }
      }
    } catch (error) {
      this.options.logger.warn("notification catch-up after reconnect failed", { error: errorMessage(error) });
    }
  }
}
