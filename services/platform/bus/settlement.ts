import type { JsMsg } from "@nats-io/jetstream";

/**
 * The outcome of a JetStream message whose bus messages (one, or a bundle's entries) are
 * handled one by one: acked once every one is done, nak'd (with the shortest delay asked
 * for) if any is to be retried. A bundle's entries that were done are handled again on
 * redelivery; the inbox, or effects keyed by order, make that harmless.
 */
export class Settlement {
  private left: number;
  private retryAsked = false;
  private retryDelayMs = Number.POSITIVE_INFINITY;

  constructor(
    private readonly m: JsMsg,
    readonly size: number,
  ) {
    this.left = size;
    if (size === 0) m.ack();
  }

  /** One bus message is done (handled, a duplicate, or dead-lettered). */
  done(): void {
    this.settleOne();
  }

  /** One bus message is to be tried again, after `delayMs` (at once without). */
  retry(delayMs = 0): void {
    this.retryAsked = true;
    this.retryDelayMs = Math.min(this.retryDelayMs, delayMs);
    this.settleOne();
  }

  private settleOne(): void {
    this.left -= 1;
    if (this.left !== 0) return;
    if (!this.retryAsked) this.m.ack();
    else if (this.retryDelayMs > 0) this.m.nak(this.retryDelayMs);
    else this.m.nak();
  }
}
