// What a saga costs in messages and database writes, counted where they happen: the saga
// streams' sequence numbers, Postgres's transaction ids and its write-ahead log. Unlike CPU
// and latency these do not move with the machine's speed, so a change in the saga's shape
// (a message or a statement fewer) shows in them exactly.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Queryable } from "../services/platform/db.js";
import { sagaStreams } from "../services/platform/saga-routes.js";

export interface WorkCount {
  /** Messages stored in the saga's streams so far (their last sequence numbers, summed). */
  jetstreamMessages: number;
  /**
   * Bytes the saga's streams hold. The bench's recording of the stages keeps every message of
   * the steps, so a step adds what the saga published in it. With --no-stages the streams are
   * trimmed during the steps, as deployed, and hold only what some consumer has yet to finish:
   * a step's work then leaves the bytes out (`workBetween`).
   */
  jetstreamBytes: number;
  /**
   * Transaction ids Postgres has handed out so far, server-wide: one per transaction that
   * writes (each writing statement outside BEGIN / COMMIT is one); reads take none. Exact and
   * immediate, unlike pg_stat_database's counters, which busy backends report up to a minute late.
   */
  postgresWrites: number;
  /**
   * Bytes of write-ahead log Postgres has written so far, server-wide (its current WAL
   * position): every row, index entry and commit a write adds. Exact and immediate; pages
   * written whole after a checkpoint (full-page images) add to it, so steps right after a
   * checkpoint read somewhat higher. Needs the primary (a standby has no position of its own).
   */
  postgresWalBytes: number;
}

/** Work done over a step; without `jetstreamBytes` when the streams were trimmed meanwhile (what they hold then is not what was published). */
export type StepWork = Omit<WorkCount, "jetstreamBytes"> & { jetstreamBytes?: number };

export type SagaWork = StepWork & {
  /** The same per saga concluded in the step (CONFIRMED, REJECTED or CANCELLED); null when none concluded. */
  perSaga: StepWork | null;
};

const isSagaStream = (name: string): boolean => sagaStreams.includes(name);

/** The counts so far, over the streams `counted` names (default: the saga's). */
export async function countWork(jsm: JetStreamManager, db: Queryable, counted: (stream: string) => boolean = isSagaStream): Promise<WorkCount> {
  let jetstreamMessages = 0;
  let jetstreamBytes = 0;
  for await (const stream of jsm.streams.list()) {
    if (!counted(stream.config.name)) continue;
    jetstreamMessages += stream.state.last_seq;
    jetstreamBytes += stream.state.bytes;
  }
  const { rows } = await db.query<{ next: string; wal: string }>(
    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS wal",
  );
  return { jetstreamMessages, jetstreamBytes, postgresWrites: Number(rows[0]?.next ?? 0), postgresWalBytes: Number(rows[0]?.wal ?? 0) };
}

/**
 * The work done between two counts, and per saga concluded in between; the bytes stored only
 * with `bytesKept` (the stages' recording kept every message of the step in the streams).
 */
export function workBetween(before: WorkCount, after: WorkCount, sagas: number, bytesKept = true): SagaWork {
  const jetstreamMessages = after.jetstreamMessages - before.jetstreamMessages;
  const jetstreamBytes = after.jetstreamBytes - before.jetstreamBytes;
  const postgresWrites = after.postgresWrites - before.postgresWrites;
  const postgresWalBytes = after.postgresWalBytes - before.postgresWalBytes;
  const per = (n: number, decimals = 2): number => Math.round((n / sagas) * 10 ** decimals) / 10 ** decimals;
  const bytes = (n: number) => (bytesKept ? { jetstreamBytes: n } : {});
  return {
    jetstreamMessages,
    ...bytes(jetstreamBytes),
    postgresWrites,
    postgresWalBytes,
    perSaga:
      sagas > 0
        ? { jetstreamMessages: per(jetstreamMessages), ...bytes(per(jetstreamBytes, 0)), postgresWrites: per(postgresWrites), postgresWalBytes: per(postgresWalBytes, 0) }
        : null,
  };
}
