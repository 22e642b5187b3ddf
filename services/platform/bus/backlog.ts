import type { ConsumerInfo, JetStreamManager, StreamInfo } from "@nats-io/jetstream";
import { isMissing } from "./missing.js";

/** A durable consumer of a stream. */
export interface ConsumerRef {
  stream: string;
  durable: string;
}

/** Messages a consumer has yet to finish: not yet delivered, or delivered and not yet acknowledged. */
export function unfinished(consumer: Pick<ConsumerInfo, "num_pending" | "num_ack_pending">): number {
  return consumer.num_pending + consumer.num_ack_pending;
}

/**
 * Messages the consumers have yet to finish: not yet delivered, or delivered and not yet
 * acknowledged. A consumer that does not exist counts 0.
 */
export async function consumerBacklog(jsm: JetStreamManager, consumers: readonly ConsumerRef[]): Promise<number> {
  const counts = await Promise.all(
    consumers.map(async ({ stream, durable }) => {
      try {
        return unfinished(await jsm.consumers.info(stream, durable));
      } catch (error) {
        if (isMissing(error, "consumer")) return 0;
        throw error;
      }
    }),
  );
  return counts.reduce((sum, n) => sum + n, 0);
}

/** A stream's info and its consumers', read together (what trimming and the usage gauges both need). */
export async function streamWithConsumers(jsm: JetStreamManager, stream: string): Promise<{ info: StreamInfo; consumers: ConsumerInfo[] }> {
  const info = await jsm.streams.info(stream);
  const consumers: ConsumerInfo[] = [];
  for await (const consumer of jsm.consumers.list(stream)) consumers.push(consumer);
  return { info, consumers };
}
