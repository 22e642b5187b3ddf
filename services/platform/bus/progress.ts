import type { JsMsg } from "@nats-io/jetstream";

/**
 * Keeps JetStream from redelivering messages a live consumer is still holding
 * (queued behind a batch, or in a slow one): every `everyMs` it sends
 * `working()` for each message that was already held at the previous tick,
 * which restarts that message's ack wait. So the ack wait can be short, and
 * what a crashed process held comes back soon, without a busy process getting
 * its own messages redelivered. A message settled meanwhile (acked, nak'd,
 * terminated) is no harm: nats.js sends nothing more for it.
 */
export class ProgressSignals {
  private previous = new Set<JsMsg>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly held: () => Iterable<JsMsg>,
    private readonly everyMs: number,
    private readonly onSignals: (count: number) => void = () => {},
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.previous.clear();
  }

  /** One round; returns how many messages were signalled. */
  tick(): number {
    const now = new Set<JsMsg>();
    let signalled = 0;
    for (const m of this.held()) {
      now.add(m);
      if (!this.previous.has(m)) continue;
      m.working();
      signalled++;
    }
    this.previous = now;
    if (signalled > 0) this.onSignals(signalled);
    return signalled;
  }
}
