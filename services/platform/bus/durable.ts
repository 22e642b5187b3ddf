import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JetStreamClient } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { errorMessage } from "../errors.js";

export interface DurableConsumerSettings {
  stream: string;
  durable: string;
  /** One subject filter (nats-server 2.9). */
  filterSubject: string;
  ackWaitMs: number;
  /** Server-side deliveries before JetStream stops delivering. */
  maxDeliver: number;
  maxAckPending: number;
}

/**
 * Creates the durable pull consumer (explicit ack, from the stream's start), or updates what
 * can be updated of one that exists with another configuration.
 *
 * No server-side `backoff`: with it set (ack_wait multiples), nats-server 2.9.10 did not
 * redeliver a message nak'd a second time with a 100 ms delay within 5 s (its redelivery
 * check uses backoff[n]). Retry delays come from the consumer's nak delays; ack_wait covers crashes.
 */
export async function ensureDurableConsumer(js: JetStreamClient, settings: DurableConsumerSettings): Promise<void> {
  const { stream, durable, filterSubject } = settings;
  const jsm = await js.jetstreamManager();
  const limits = { max_deliver: settings.maxDeliver, ack_wait: nanos(settings.ackWaitMs), max_ack_pending: settings.maxAckPending };
  const config: Partial<ConsumerConfig> = { durable_name: durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: filterSubject, ...limits };
  try {
    await jsm.consumers.add(stream, config);
  } catch (err) {
    try {
      await jsm.consumers.update(stream, durable, { ...limits, filter_subject: filterSubject });
    } catch {
      throw new Error(`cannot create or update consumer ${durable} on ${stream}: ${errorMessage(err)}`);
    }
  }
}
