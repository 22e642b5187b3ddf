import type { ConsumerMessages } from "@nats-io/jetstream";

/** nats.js's idle-heartbeat monitor of a `consume()`, which its types do not show. */
interface HeartbeatMonitor {
  cancel(): void;
  restart(): void;
}

function monitorOf(messages: ConsumerMessages): HeartbeatMonitor | undefined {
  return (messages as unknown as { monitor?: HeartbeatMonitor | null }).monitor ?? undefined;
}

/**
 * Rests nats.js's heartbeat monitor while the pump does not read the messages. Then no pull is
 * open at the server and no heartbeat comes, and the monitor, two beats later, would queue a
 * full-prefetch pull every second behind the messages the iterator has yet to give — all sent
 * once the pump reads on, hundreds of messages past the prefetch bound after a long outage
 * (bus README, Consumers). The monitor is stopped after `afterMs` of waiting, and again every
 * `afterMs` while the wait lasts (nats.js restarts it after a reconnect, and it needs two
 * missed beats to act), so the pump's many short waits under load cost a timer each and
 * nothing more; it starts again when the pump reads on.
 */
export class HeartbeatRest {
  private timer: NodeJS.Timeout | undefined;
  private resting = false;

  constructor(
    private readonly messages: ConsumerMessages,
    private readonly afterMs: number,
  ) {}

  /** The pump stops reading. */
  begin(): void {
    this.timer = setInterval(() => {
      this.resting = true;
      monitorOf(this.messages)?.cancel();
    }, this.afterMs).unref();
  }

  /** The pump reads on (`closing`: the messages are being closed, and the monitor with them). */
  end(closing: boolean): void {
    clearInterval(this.timer);
    if (!this.resting) return;
    this.resting = false;
    // Looked up again: nats.js drops its monitor when the messages are closed.
    if (!closing) monitorOf(this.messages)?.restart();
  }
}
