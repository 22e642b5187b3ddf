import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Notification, NotificationSchema } from "../../gen/orderflow/notification/v1/notification_pb.js";
import { errorMessage } from "../platform/errors.js";
import type { Logger } from "../platform/logger.js";
import { SharedSubscriptions } from "../platform/shared-subscriptions.js";
import { createdSubject, onNotificationsCreated } from "./announcements.js";
import { notificationMetrics } from "./metrics.js";
import { type NotificationRow, toNotification } from "./store.js";

export interface NotificationHubOptions {
  nc: NatsConnection;
  logger: Logger;
  /** Rows of these customers created since a time: what announcements may have missed. */
  createdSince?: (customerIds: string[], since: Date) => Promise<NotificationRow[]>;
  /** How often the watched customers' recent notifications are read again (default 5 s). */
  recheckMs?: number;
}

/**
 * Reads look this far further back than the last read that succeeded: created_at is taken at
 * insert, not at commit, and on Postgres's clock, not this process's.
 */
const readSlackMs = 10_000;

/**
 * Publishes the notifications this process commits, each on its customer's subject, for the
 * hubs of every replica. Returns the unregistration.
 */
export function announceOverNats(nc: NatsConnection): () => void {
  return onNotificationsCreated((rows) => {
    // Told after the commit: an announcement that cannot go out (the connection is closed or
    // draining, at shutdown) must not fail the batch that committed it.
    try {
      for (const row of rows) nc.publish(createdSubject(row.customer_id), toBinary(NotificationSchema, toNotification(row)));
    } catch {
      return;
    }
  });
}

/** One WatchNotifications stream: what it has yet to send. */
class Stream {
  private readonly queue: Notification[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  /** Ids recently handed out, so a catch-up after a reconnect never repeats one. */
  private readonly seen = new Set<string>();
  /** Counted as subscribed once NATS has the subscription. */
  ready = false;
  readonly since = Date.now();

  push(notification: Notification): void {
    if (this.ended || this.seen.has(notification.notificationId)) return;
    this.seen.add(notification.notificationId);
    if (this.seen.size > 1_000) this.seen.delete(this.seen.values().next().value ?? "");
    this.queue.push(notification);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  /** The next notification, or undefined once the stream ended or the signal aborted. */
  async next(signal: AbortSignal): Promise<Notification | undefined> {
    for (;;) {
      const notification = this.queue.shift();
      if (notification) return notification;
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
 * Fans new notifications out to WatchNotifications streams. Each replica announces what it
 * records on core NATS, one subject per customer (`announceOverNats`); a hub subscribes to a
 * customer's subject while it has streams of that customer, so a watcher on any replica sees
 * notifications recorded by any other. Core NATS delivers at most once, so the hub also reads
 * its watchers' customers' recent notifications every few seconds, and as soon as its
 * connection comes back, and delivers what is new.
 */
export class NotificationHub {
  /** The open streams of each customer watched. */
  private readonly customers = new Map<string, Set<Stream>>();
  private readonly subscriptions: SharedSubscriptions;
  private closed = false;
  private received = 0;
  /** When the last read of recent notifications that succeeded began: the next one reads from there. */
  private readFrom = Date.now();
  private reading = false;
  private readonly recheck: NodeJS.Timeout;

  constructor(private readonly options: NotificationHubOptions) {
    this.subscriptions = new SharedSubscriptions(options.nc, createdSubject, (customerId, data) => this.dispatch(customerId, data));
    this.followConnection().catch((error: unknown) => options.logger.warn("notification hub stopped following its NATS connection", { error: errorMessage(error) }));
    this.recheck = setInterval(() => void this.readRecent(), options.recheckMs ?? 5_000);
    this.recheck.unref();
  }

  /** Announcements received by this hub so far (all customers). */
  get announcements(): number {
    return this.received;
  }

  /** Open streams NATS has the subscription of (of one customer, or all). */
  subscriberCount(customerId?: string): number {
    const entries = customerId === undefined ? [...this.customers.values()] : [this.customers.get(customerId)];
    let n = 0;
    for (const streams of entries) for (const stream of streams ?? []) if (stream.ready) n++;
    return n;
  }

  /**
   * Each notification for the customer announced once NATS has the subscription, until
   * `signal` aborts or the hub ends its streams. (One committed just before the call may still
   * be announced after it and is then delivered: announcements, not timestamps, decide.)
   */
  async *subscribe(customerId: string, signal: AbortSignal): AsyncGenerator<Notification> {
    if (this.closed) return;
    const stream = new Stream();
    const streams = this.customers.get(customerId) ?? new Set<Stream>();
    this.customers.set(customerId, streams.add(stream));
    notificationMetrics.watchers.inc();
    try {
      await this.subscriptions.acquire(customerId);
      stream.ready = true;
      for (;;) {
        const notification = await stream.next(signal);
        if (!notification) return;
        if (notification.createdAt) notificationMetrics.deliveryLag.observe(Math.max(0, Date.now() - timestampMs(notification.createdAt)) / 1000);
        yield notification;
      }
    } finally {
      streams.delete(stream);
      if (streams.size === 0 && this.customers.get(customerId) === streams) this.customers.delete(customerId);
      this.subscriptions.release(customerId);
    }
  }

  /** Ends every open stream (server shutdown), so in-flight RPCs finish at once; new ones end immediately. */
  endStreams(): void {
    this.closed = true;
    for (const streams of this.customers.values()) for (const stream of streams) stream.end();
  }

  close(): void {
    clearInterval(this.recheck);
    this.endStreams();
    this.subscriptions.releaseAll();
    this.customers.clear();
  }

  private dispatch(customerId: string, data: Uint8Array): void {
    this.received++;
    let notification: Notification;
    try {
      notification = fromBinary(NotificationSchema, data);
    } catch (error) {
      this.options.logger.warn("ignoring a malformed notification announcement", { error: errorMessage(error) });
      return;
    }
    for (const stream of this.customers.get(customerId) ?? []) stream.push(notification);
  }

  /** Catches up as soon as the connection is back (nats.js subscribes again by itself). */
  private async followConnection(): Promise<void> {
    for await (const status of this.options.nc.status()) {
      if (status.type !== "reconnect") continue;
      notificationMetrics.catchUps.inc();
      void this.readRecent();
    }
  }

  /**
   * Reads what the watched customers got since the last read that succeeded, and delivers what
   * the streams have not seen. Announcements go over core NATS, at most once: one published
   * while the announcing replica's connection was down, or by a replica that died before it
   * could, or while this hub's connection was away unnoticed, is found here. A read that fails
   * is made good by the next one.
   */
  private async readRecent(): Promise<void> {
    if (this.reading || !this.options.createdSince) return;
    this.reading = true;
    const started = Date.now();
    try {
      const customers = [...this.customers.keys()];
      if (customers.length > 0) {
        const rows = await this.options.createdSince(customers, new Date(this.readFrom - readSlackMs));
        for (const row of rows) {
          const notification = toNotification(row);
          // Only what was created after the stream began, as its announcements would have been.
          for (const stream of this.customers.get(row.customer_id) ?? []) if (row.created_at.getTime() >= stream.since) stream.push(notification);
        }
      }
      this.readFrom = started;
    } catch (error) {
      this.options.logger.warn("reading recent notifications failed; the next read covers them", { error: errorMessage(error) });
    } finally {
      this.reading = false;
    }
  }
}
