import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { ReceivedEntry } from "./bundle.js";
import { publishDeadEntry, publishDeadLetter } from "./dlq.js";
import { busMetrics } from "./metrics.js";
import type { DlqConfig } from "./names.js";
import type { Settlement } from "./settlement.js";

/** Why a consumer dead-letters a message. */
export const deadLetterReasons = ["undecodable", "max_deliveries", "handler_failed"] as const;
export type DeadLetterReason = (typeof deadLetterReasons)[number];

/** A consumer's way to its dead-letter stream. */
export class DeadLetters {
  constructor(
    private readonly options: {
      js: JetStreamClient;
      dlq: DlqConfig;
      consumer: string;
      log: Logger;
      /** How long a message whose dead letter could not be published waits before it comes back. */
      retryDelayMs: number | undefined;
      /** Counts one more message dead-lettered. */
      counted: () => void;
    },
  ) {
    for (const reason of deadLetterReasons) busMetrics.deadLetters.inc({ consumer: options.consumer, reason }, 0);
  }

  /**
   * Dead-letters a JetStream message, or with `entry`, one bus message it carries: a bundle's
   * entry goes to the DLQ alone, and the bundle is acked or redelivered with its other entries.
   * When the DLQ cannot be published to, the message is kept: it comes back (the server's
   * max_deliver has slack) and is dead-lettered then.
   */
  async send(m: JsMsg, error: string, reason: DeadLetterReason, entry?: { s: Settlement; e: ReceivedEntry }): Promise<void> {
    const { js, dlq, consumer, log } = this.options;
    const ofBundle = entry !== undefined && entry.s.size > 1 ? entry : undefined;
    const fields = { consumer, subject: m.subject, stream_seq: m.seq, message_id: entry?.e.id, delivery: m.info.deliveryCount };
    try {
      if (ofBundle) {
        const { e, s } = ofBundle;
        await publishDeadEntry(js, { subject: m.subject, stream: m.info.stream, streamSeq: m.seq, deliveries: m.info.deliveryCount, id: e.id, headers: e.headers, data: e.payload }, error, consumer, dlq);
        s.done();
      } else {
        await publishDeadLetter(js, m, error, consumer, dlq);
        m.term();
      }
      busMetrics.deadLetters.inc({ consumer, reason });
      this.options.counted();
      log.error("message dead-lettered", { ...fields, reason, error });
    } catch (err) {
      const delay = this.options.retryDelayMs;
      if (ofBundle) ofBundle.s.retry(delay);
      else m.nak(delay);
      log.error("cannot publish dead letter; will retry", { ...fields, error: errorMessage(err) });
    }
  }
}
