import type { ConsumerInfo, JetStreamManager } from "@nats-io/jetstream";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { counter } from "../metrics.js";
import { runPeriodically } from "../periodic.js";
import { streamWithConsumers, unfinished } from "./backlog.js";

const trimmed = counter("orderflow_bus_stream_trimmed_total", "Messages let go from a saga stream once every consumer of it had finished them", ["stream"]);

/** How far a consumer is through its stream. */
export type ConsumerProgress = Pick<ConsumerInfo, "num_pending" | "num_ack_pending"> & { ack_floor: Pick<ConsumerInfo["ack_floor"], "stream_seq"> };

/**
 * The first sequence of a stream some consumer may still need, of `consumers` read after the
 * stream's `lastSeq`: a consumer with nothing left to take or in hand has finished all the
 * stream held then; another, all up to its ack floor. Without consumers, none is finished (a
 * consumer yet to be created will want the stream from its start).
 */
export function firstNeeded(lastSeq: number, consumers: readonly ConsumerProgress[]): number {
  if (consumers.length === 0) return 0;
  return Math.min(...consumers.map((c) => (unfinished(c) === 0 ? lastSeq : c.ack_floor.stream_seq) + 1));
}

/** Lets go of the messages of `stream` every consumer of it has finished; returns how many. */
export async function trimStream(jsm: JetStreamManager, stream: string): Promise<number> {
  const { info, consumers } = await streamWithConsumers(jsm, stream);
  const state = info.state;
  const keepFrom = firstNeeded(state.last_seq, consumers);
  if (keepFrom <= state.first_seq) return 0;
  const { purged } = await jsm.streams.purge(stream, { seq: keepFrom });
  if (purged > 0) trimmed.inc({ stream }, purged);
  return purged;
}

/**
 * Trims `streams` every `intervalMs` while `active()` says so, so that a saga stream holds what
 * its consumers have yet to finish and not the saga's history (the streams have limits
 * retention: JetStream itself lets messages go only by age or at the byte bound). Safe from any
 * number of processes (a purge below what is already gone does nothing); `active` spares the
 * other replicas the reads. Returns what stops it.
 */
export function startStreamTrimming(options: { jsm: JetStreamManager; streams: readonly string[]; intervalMs?: number; active?: () => boolean; logger: Logger }): () => void {
  const { jsm, streams, logger } = options;
  const active = options.active ?? (() => true);
  return runPeriodically(
    options.intervalMs ?? 5_000,
    async () => {
      if (!active()) return;
      for (const stream of streams) await trimStream(jsm, stream);
    },
    (err) => logger.warn("saga stream trimming failed", { error: errorMessage(err) }),
  );
}
