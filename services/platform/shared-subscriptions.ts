import type { NatsConnection, Subscription } from "@nats-io/transport-node";

/**
 * Core NATS subscriptions held per key (an order, a customer) for as long as anyone in the
 * process wants that key's messages: the first `acquire` of a key subscribes to its subject,
 * the last `release` unsubscribes. Every message goes to `onMessage` with its key.
 */
export class SharedSubscriptions {
  private readonly entries = new Map<string, { subscription: Subscription; holders: number; ready: Promise<void> }>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjectOf: (key: string) => string,
    private readonly onMessage: (key: string, data: Uint8Array) => void,
  ) {}

  /**
   * Holds the key's subscription; resolves once NATS has it, so no message published after
   * that is missed — or, while the connection is down, at once: the client subscribes again
   * when it is back, and what was published meanwhile is for the holder's own re-reads to
   * find (a watch must not fail because NATS is reconnecting).
   */
  acquire(key: string): Promise<void> {
    const existing = this.entries.get(key);
    if (existing) {
      existing.holders += 1;
      return existing.ready;
    }
    const subscription = this.nc.subscribe(this.subjectOf(key), {
      callback: (error, msg) => {
        if (!error) this.onMessage(key, msg.data);
      },
    });
    const ready = this.nc.flush().catch(() => undefined);
    this.entries.set(key, { subscription, holders: 1, ready });
    return ready;
  }

  /** Lets go of one `acquire`; the last one unsubscribes. */
  release(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    entry.holders -= 1;
    if (entry.holders > 0) return;
    this.entries.delete(key);
    entry.subscription.unsubscribe();
  }

  /** The keys held now. */
  keys(): IterableIterator<string> {
    return this.entries.keys();
  }

  /** Unsubscribes every key (shutdown); later releases do nothing. */
  releaseAll(): void {
    for (const { subscription } of this.entries.values()) subscription.unsubscribe();
    this.entries.clear();
  }
}
