import { JetStreamApiCodes, JetStreamApiError, type JetStreamManager } from "@nats-io/jetstream";

/** A durable consumer of a stream. */
export interface ConsumerRef {
  stream: string;
  durable: string;
}

/**
 * Messages the consumers have yet to finish: not yet delivered, or delivered and not yet
 * acknowledged. A consumer that does not exist counts 0.
 */
export async function consumerBacklog(jsm: JetStreamManager, consumers: readonly ConsumerRef[]): Promise<number> {
  const counts = await Promise.all(
    consumers.map(async ({ stream, durable }) => {
      try {
        const info = await jsm.consumers.info(stream, durable);
        return info.num_pending + info.num_ack_pending;
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) return 0;
        throw error;
      }
    }),
  );
  return counts.reduce((sum, n) => sum + n, 0);
}
