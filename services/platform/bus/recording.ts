import { AckPolicy, DeliverPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { isMissing } from "./missing.js";

/**
 * Keeps every message `streams` store from now on until `stopRecording`: a consumer named
 * `name` on each that takes nothing. The saga's streams are otherwise trimmed once their
 * consumers have finished a message; the bench reads a run's messages back, and tests what
 * was published.
 * Left behind by a process that dies, it goes by itself after `expiresMs` without a read.
 */
export async function startRecording(jsm: JetStreamManager, streams: readonly string[], name: string, expiresMs = 15 * 60_000): Promise<void> {
  for (const stream of streams) {
    await jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.New, inactive_threshold: nanos(expiresMs) });
  }
}

/** Lets the streams drop what the recording kept. */
export async function stopRecording(jsm: JetStreamManager, streams: readonly string[], name: string): Promise<void> {
  for (const stream of streams) {
    await jsm.consumers.delete(stream, name).catch((err: unknown) => {
      if (!isMissing(err, "consumer")) throw err;
    });
  }
}
