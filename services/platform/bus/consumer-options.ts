import type { Message, Registry } from "@bufbuild/protobuf";
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import type { Pool, PoolClient } from "pg";
import type { Logger } from "../logger.js";
import type { ConsumerRoute } from "./durable.js";
import type { StreamPublisher } from "./jetstream-publisher.js";
import type { DlqConfig } from "./names.js";
import type { OutgoingMessage } from "./publish.js";

// What a bus consumer is given and what its handlers see (the consumer itself: consumer.ts).

/** One decoded message handed to a handler. */
export interface Delivery {
  /** Logical message id (`of-id`, else Nats-Msg-Id, else `<stream>:<seq>`): the inbox key. */
  id: string;
  subject: string;
  /** Protobuf type name; test it with `isMessage(d.message, SomeSchema)`. */
  type: string;
  message: Message;
  /** Partition key (`of-key`), "" if none. */
  key: string;
  headers: MsgHdrs | undefined;
  /** 1 on the first delivery. */
  deliveryCount: number;
  streamSeq: number;
  /** The raw JetStream message (e.g. for `working()`); do not ack it yourself. */
  msg: JsMsg;
}

/** `durable` is also the consumer's name in the inbox, metrics and dead letters. */
export interface ConsumerCommonOptions extends ConsumerRoute {
  js: JetStreamClient;
  /** Most messages per batch / per transaction (default 100). */
  batchSize?: number;
  /** Deliveries before a failing message is dead-lettered (default 5). */
  maxDeliver?: number;
  /** nak delay after failed delivery n is `backoffMs[min(n-1, len-1)]` (default [500, 2000, 8000, 30000]). */
  backoffMs?: readonly number[];
  /**
   * Time JetStream waits for an ack or a progress signal before it redelivers a message
   * (default 10 s). A live consumer signals progress for what it holds every quarter of it,
   * so this bounds how long the messages of a crashed process stay away, not how long a
   * batch may take.
   */
  ackWaitMs?: number;
  /**
   * JetStream messages nats.js fetches ahead of the consumer's own queue (default 2 × batchSize).
   * Those are not signalled in progress: keep it small for a consumer of bundles, whose every
   * message may carry up to 64 entries, so that what it holds ahead is handled within `ackWaitMs`.
   */
  prefetch?: number;
  /** Unacknowledged messages allowed across all replicas of this consumer (default max(1000, 10 × batchSize)). */
  maxAckPending?: number;
  /** Types the consumer can decode (default the saga messages). */
  registry?: Registry;
  dlq?: DlqConfig;
  logger?: Logger;
}

/** With Postgres: effects (and the inbox rows, unless turned off) in one transaction per batch. */
export interface InboxConsumerOptions extends ConsumerCommonOptions {
  pool: Pool;
  /** Schema holding the `inbox` and `outbox` tables (and whatever the handler writes). */
  schema: string;
  /**
   * Record each message id in `<schema>.inbox` and skip ids seen before (default true).
   * false when every handler is idempotent by keys of its own — a redelivered message is
   * handled again and must change nothing (re-emitting a recorded reply is fine): saves a
   * statement per batch and a row per message (one id met twice in a batch is still handled
   * once). The saga's participants are (docs/saga-contract.md).
   */
  inbox?: boolean;
  /**
   * Inbox rows older than this are deleted (every minute, by one replica; default 24 h, 0 = keep).
   * Duplicates arrive within minutes (lost acks: ack_wait; relay re-publishes: seconds), so
   * a day is ample; keep it above the longest consumer outage you want to ride out with
   * redeliveries of already-processed messages.
   */
  inboxRetentionMs?: number;
  /**
   * Publish what the handlers emit to JetStream after the commit, and ack the batch's messages
   * once JetStream has stored it, instead of writing it to `<schema>.outbox` for a relay. Only
   * for handlers that emit the same messages again when a message is handled again (idempotent
   * by keys of their own, `inbox: false`): a crash between the commit and the publish then loses
   * nothing, because the unacknowledged message comes back and is handled again. Emitted
   * messages need an `id` derived from their delivery's, so that JetStream drops such a
   * re-publish. The saga's participants publish their replies this way.
   */
  publishEmitted?: StreamPublisher;
  /**
   * Called once per new message, in order, inside the batch transaction `tx`. Throw to fail
   * the message. Messages given to `out.emit` are written to `<schema>.outbox` in one INSERT
   * at the end of the transaction (cheaper than an `enqueueOutbox` per message), or published
   * after the commit (`publishEmitted`).
   */
  handle: (delivery: Delivery, tx: PoolClient, out: OutboxWriter) => Promise<void>;
  /**
   * Called once per batch transaction before the handlers, with the new messages: e.g. to
   * lock every row the batch will touch in one sorted statement, so concurrent batches on
   * several replicas cannot deadlock.
   */
  beforeBatch?: (tx: PoolClient, deliveries: Delivery[]) => Promise<void>;
  /**
   * Called once per batch transaction that had new messages, after their handlers and
   * before the outbox rows and the commit: e.g. to write in one statement what the
   * handlers collected (and emit what that decided).
   */
  afterBatch?: (tx: PoolClient, out: OutboxWriter) => Promise<void>;
}

/** Without Postgres (no inbox): the handler keeps its own idempotency (e.g. Redis + deterministic msgIDs). */
export interface DirectConsumerOptions extends ConsumerCommonOptions {
  pool?: undefined;
  schema?: undefined;
  /** Run the handlers of a batch concurrently (no order between them); default false. */
  parallel?: boolean;
  /**
   * With `parallel`: batches handled at once (default 1). With 2, the next batch starts while
   * the previous one's handlers wait (e.g. on a statement that applies the whole batch), so a
   * consumer whose batches are mostly waiting keeps up with more; messages of one key may
   * then be handled at the same time, as those of one batch already are.
   */
  batchesInFlight?: number;
  /**
   * Publish what the batch's handlers give `out.emit` once they have all run (bundled, as
   * `publishBundled` does), then ack their messages; a handler that fails emits nothing. For
   * handlers that emit the same messages, with ids derived from their delivery's, when a
   * message is handled again: a crash before the publish then loses nothing.
   */
  publishEmitted?: StreamPublisher;
  handle: (delivery: Delivery, out: OutboxWriter) => Promise<void>;
}

export type ConsumerOptions = InboxConsumerOptions | DirectConsumerOptions;

/** Collects outbox messages during a consumer transaction; written just before COMMIT. */
export interface OutboxWriter {
  emit(...messages: OutgoingMessage[]): void;
}

export interface BusConsumer {
  readonly name: string;
  /** Stops fetching, finishes the batches in flight, returns unprocessed buffered messages (nak), then resolves. */
  stop(): Promise<void>;
}
