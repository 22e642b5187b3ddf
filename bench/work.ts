// What a saga costs in messages and database writes, counted where they happen: the saga
// streams' sequence numbers and Postgres's transaction ids. Unlike CPU
// and latency these do not move with the machine's speed, so a change in the saga's shape
// (a message or a statement fewer) shows in them exactly.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Queryable } from "../services/platform/db.js";
import { ignoredStreams } from "./queues.js";

export interface WorkCount {
  /** Messages stored in the saga's streams so far (their last sequence numbers, summed). */
  jetstreamMessages: number;
  /**
   * Transaction ids Postgres has handed out so far, server-wide: one per transaction that
   * writes (each writing statement outside BEGIN / COMMIT is one); reads take none. Exact and
   * immediate, unlike pg_stat_database's counters, which busy backends report up to a minute late.
   */
  postgresWrites: number;
}

export interface SagaWork {
  jetstreamMessages: number;
  postgresWrites: number;
  /** The same per saga concluded in the step (CONFIRMED, REJECTED or CANCELLED); null when none concluded. */
  perSaga: { jetstreamMessages: number; postgresWrites: number } | null;
}

const sagaStreams = (name: string): boolean => !ignoredStreams.test(name);

/** The counts so far, over the streams `counted` names (default: the saga's). */
export async function countWork(jsm: JetStreamManager, db: Queryable, counted: (stream: string) => boolean = sagaStreams): Promise<WorkCount> {
  let jetstreamMessages = 0;
  for await (const stream of jsm.streams.list()) {
    if (counted(stream.config.name)) jetstreamMessages += stream.state.last_seq;
  }
  const { rows } = await db.query<{ next: string }>("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next");
  return { jetstreamMessages, postgresWrites: Number(rows[0]?.next ?? 0) };
}

/** The work done between two counts, and per saga concluded in between. */
export function workBetween(before: WorkCount, after: WorkCount, sagas: number): SagaWork {
  const jetstreamMessages = after.jetstreamMessages - before.jetstreamMessages;
  const postgresWrites = after.postgresWrites - before.postgresWrites;
  const per = (n: number): number => Math.round((n / sagas) * 100) / 100;
  return {
    jetstreamMessages,
    postgresWrites,
    perSaga: sagas > 0 ? { jetstreamMessages: per(jetstreamMessages), postgresWrites: per(postgresWrites) } : null,
  };
}
