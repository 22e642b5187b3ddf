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
  /** Rows of these customers created since a time, to catch up after the NATS connection comes back. */
  createdSince?: (customerIds: string[], since: Date) => Promise<NotificationRow[]>;
}

/** Catch-up looks this far before the disconnect (created_at is taken at insert, not at commit). */
const catchUpSlackMs = 10_000;

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
 * notifications recorded by any other. Core NATS does not keep what is published while a
 * subscriber is disconnected: when the connection comes back, the hub reads what its
 * watchers' customers got meanwhile (by created_at) and delivers what is new.
 */
export class NotificationHub {
  /** The open streams of each customer watched. */
  private readonly customers = new Map<string, Set<Stream>>();
  private readonly subscriptions: SharedSubscriptions;
  private closed = false;
  private disconnectedAt: Date | undefined;
  private received = 0;

  constructor(private readonly options: NotificationHubOptions) {
    this.subscriptions = new SharedSubscriptions(options.nc, createdSubject, (customerId, data) => this.dispatch(customerId, data));
    this.followConnection().catch((error: unknown) => options.logger.warn("notification hub stopped following its NATS connection", { error: errorMessage(error) }));
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

  /** Notes when the connection drops, and catches up when it is back (nats.js subscribes again by itself). */
  private async followConnection(): Promise<void> {
    for await (const status of this.options.nc.status()) {
      if (status.type === "disconnect") this.disconnectedAt ??= new Date();
      else if (status.type === "reconnect") void this.catchUp();
    }
  }

  private async catchUp(): Promise<void> {
    const since = this.disconnectedAt;
    this.disconnectedAt = undefined;
    const customers = [...this.customers.keys()];
    if (!since || customers.length === 0 || !this.options.createdSince) return;
    notificationMetrics.catchUps.inc();
    try {
      const rows = await this.options.createdSince(customers, new Date(since.getTime() - catchUpSlackMs));
      for (const row of rows) {
        const notification = toNotification(row);
        for (const stream of this.customers.get(row.customer_id) ?? []) {
          if (row.created_at.getTime() >= stream.since - catchUpSlackMs) stream.push(notification);
        }
      }
    } catch (error) {
      this.options.logger.warn("notification catch-up after a NATS reconnect failed", { error: errorMessage(error) });
    }
  }
}
