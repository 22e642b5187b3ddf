// What a saga costs in messages and database transactions, counted where they happen: the
// saga streams' sequence numbers and Postgres's count of committed transactions. Unlike CPU
// and latency these do not move with the machine's speed, so a change in the saga's shape
// (a message or a statement fewer) shows in them exactly.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Queryable } from "../services/platform/db.js";
import { ignoredStreams } from "./queues.js";

export interface WorkCount {
  /** Messages stored in the saga's streams so far (their last sequence numbers, summed). */
  jetstreamMessages: number;
  /** Transactions committed in the database so far (each statement outside BEGIN / COMMIT is one). */
  postgresTransactions: number;
}

export interface SagaWork {
  jetstreamMessages: number;
  postgresTransactions: number;
  /** The same per saga concluded in the step (CONFIRMED, REJECTED or CANCELLED); null when none concluded. */
  perSaga: { jetstreamMessages: number; postgresTransactions: number } | null;
}

const sagaStreams = (name: string): boolean => !ignoredStreams.test(name);

/** The counts so far, over the streams `counted` names (default: the saga's). */
export async function countWork(jsm: JetStreamManager, db: Queryable, counted: (stream: string) => boolean = sagaStreams): Promise<WorkCount> {
  let jetstreamMessages = 0;
  for await (const stream of jsm.streams.list()) {
    if (counted(stream.config.name)) jetstreamMessages += stream.state.last_seq;
  }
  // Backends report their counts when they go idle, at most once a second: a count lags by
  // about that much (a step's last transactions may land in the next step's count).
  const { rows } = await db.query<{ commits: string }>("SELECT xact_commit::text AS commits FROM pg_stat_database WHERE datname = current_database()");
  return { jetstreamMessages, postgresTransactions: Number(rows[0]?.commits ?? 0) };
}

/** The work done between two counts, and per saga concluded in between. */
export function workBetween(before: WorkCount, after: WorkCount, sagas: number): SagaWork {
  const jetstreamMessages = after.jetstreamMessages - before.jetstreamMessages;
  const postgresTransactions = after.postgresTransactions - before.postgresTransactions;
  const per = (n: number): number => Math.round((n / sagas) * 100) / 100;
  return {
    jetstreamMessages,
    postgresTransactions,
    perSaga: sagas > 0 ? { jetstreamMessages: per(jetstreamMessages), postgresTransactions: per(postgresTransactions) } : null,
  };
}
