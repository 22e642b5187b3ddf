import type { PubAck } from "@nats-io/jetstream";
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { Header } from "./names.js";
import { asError } from "../errors.js";

/** What publishing to a stream needs: `JetStreamPublisher`, or nats.js's own JetStreamClient. */
export interface StreamPublisher {
  publish(subject: string, payload: Uint8Array, options: { msgID: string; headers: MsgHdrs }): Promise<PubAck>;
}

interface Pending {
  subject: string;
  sentAt: number;
  resolve(ack: PubAck): void;
  reject(error: Error): void;
}

interface PubAckReply {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  domain?: string;
  error?: { code?: number; err_code?: number; description?: string };
}

/**
 * JetStream publishes whose acks all come back on one reply subscription (what the
 * Go client calls async publish). nats.js's `js.publish` is a core request per message —
 * a reply token, a timer and two Error objects each — which at a relay's rate was a
 * measurable share of a service's CPU. Here a publish is one core NATS publish with the
 * reply subject `<inbox>.<n>`; its ack is matched by `n`, and one timer fails what waited
 * longer than `timeoutMs`. Same outcomes as `js.publish`: the ack, or an error for a
 * JetStream error reply, a subject no stream captures, a timeout or a closed publisher.
 */
export class JetStreamPublisher implements StreamPublisher {
  private readonly inbox = createInbox();
  private readonly pending = new Map<string, Pending>();
  private readonly subscription: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private next = 0;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs = 5_000,
  ) {
    this.subscription = nc.subscribe(`${this.inbox}.*`, { callback: (_err, msg) => this.settle(msg) });
    this.sweeper = setInterval(() => this.expire(), Math.max(50, Math.min(1_000, timeoutMs / 2)));
    this.sweeper.unref();
  }

  publish(subject: string, payload: Uint8Array, options: { msgID: string; headers: MsgHdrs }): Promise<PubAck> {
    if (this.closed) return Promise.reject(new Error(`JetStream publisher closed: ${subject} not published`));
    const token = (this.next++).toString(36);
    options.headers.set(Header.msgId, options.msgID);
    return new Promise<PubAck>((resolve, reject) => {
      this.pending.set(token, { subject, sentAt: performance.now(), resolve, reject });
      try {
        this.nc.publish(subject, payload, { headers: options.headers, reply: `${this.inbox}.${token}` });
      } catch (err) {
        this.pending.delete(token);
        reject(asError(err));
      }
    });
  }

  /** Fails what is still waiting for its ack and stops listening. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.subscription.unsubscribe();
    for (const [token, p] of this.pending) {
      this.pending.delete(token);
      p.reject(new Error(`JetStream publisher closed before ${p.subject} was acknowledged`));
    }
  }

  private settle(msg: Msg): void {
    const token = msg.subject.slice(this.inbox.length + 1);
    const p = this.pending.get(token);
    if (!p) return; // expired already
    this.pending.delete(token);
    if (msg.headers?.code === 503) {
      p.reject(new Error(`no JetStream stream captures ${p.subject} (no responders)`));
      return;
    }
    let reply: PubAckReply;
    try {
      reply = msg.json<PubAckReply>();
    } catch {
      p.reject(new Error(`JetStream publish to ${p.subject}: unreadable ack`));
      return;
    }
    if (reply.error) {
      p.reject(new Error(`JetStream publish to ${p.subject} refused: ${reply.error.description ?? "unknown error"} (${reply.error.err_code ?? reply.error.code ?? "?"})`));
    } else if (!reply.stream) {
      p.reject(new Error(`JetStream publish to ${p.subject}: invalid ack`));
    } else {
      const ack: PubAck = { stream: reply.stream, seq: reply.seq ?? 0, duplicate: reply.duplicate ?? false };
      if (reply.domain) ack.domain = reply.domain;
      p.resolve(ack);
    }
  }

  private expire(): void {
    const cutoff = performance.now() - this.timeoutMs;
    for (const [token, p] of this.pending) {
      // Insertion order is send order: the rest are younger.
      if (p.sentAt > cutoff) break;
      this.pending.delete(token);
      p.reject(new Error(`JetStream publish to ${p.subject} timed out after ${this.timeoutMs} ms`));
    }
  }
}
