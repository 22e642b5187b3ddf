import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";

/** Whether `err` is JetStream's answer that the stream, or the consumer, asked for does not exist. */
export function isMissing(err: unknown, what: "stream" | "consumer"): boolean {
  return err instanceof JetStreamApiError && err.code === (what === "stream" ? JetStreamApiCodes.StreamNotFound : JetStreamApiCodes.ConsumerNotFound);
}
