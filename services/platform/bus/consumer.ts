import type { Message, Registry } from "@bufbuild/protobuf";
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type ConsumerMessages, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";
import { nanos, type MsgHdrs } from "@nats-io/transport-node";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Pool, PoolClient } from "pg";
import { prepared, transaction } from "../db.js";
import { errorMessage } from "../errors.js";
import { createLogger, type Logger } from "../logger.js";
import { decodeMessage, sagaRegistry } from "./codec.js";
import { messageIdOf, publishDeadLetter } from "./dlq.js";
import type { StreamPublisher } from "./jetstream-publisher.js";
import { busMetrics } from "./metrics.js";
import { DEFAULT_DLQ, Header, quoteSchema, type DlqConfig } from "./names.js";
import { enqueueOutbox } from "./outbox.js";
import { isConflictError, isConnectionError } from "./pgerrors.js";
import { ProgressSignals } from "./progress.js";
import { pruneInbox } from "./sql.js";
import { publishAsGiven, type OutgoingMessage } from "./publish.js";
import { currentTraceHeaders, extractTraceContext } from "./trace.js";

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

export interface ConsumerCommonOptions {
  js: JetStreamClient;
  /** Stream to consume, e.g. `INVENTORY`. */
  stream: string;
  /** Durable consumer name; also the consumer's name in the inbox, metrics and dead letters. */
  durable: string;
  /** One subject filter (nats-server 2.9), e.g. `inventory.cmd.>`. */
  filterSubject: string;
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
  handle: (delivery: Delivery) => Promise<void>;
}

export type ConsumerOptions = InboxConsumerOptions | DirectConsumerOptions;

/** Collects outbox messages during a consumer transaction; written just before COMMIT. */
export interface OutboxWriter {
  emit(...messages: OutgoingMessage[]): void;
}

export interface BusConsumer {
  readonly name: string;
  /** Stops fetching, finishes the batch in flight, returns unprocessed buffered messages (nak), then resolves. */
  stop(): Promise<void>;
}

interface Item {
  m: JsMsg;
  d: Delivery;
}

type Outcome = "processed" | "duplicate";

/** What a committed batch transaction leaves to do: ack each message, publish what was emitted (`publishEmitted`). */
interface Committed {
  outcomes: Outcome[];
  emitted: OutgoingMessage[];
}

const tracer = trace.getTracer("orderflow-bus");

/** Short enough that what a crashed process held is back within seconds (see ackWaitMs). */
const DEFAULT_ACK_WAIT_MS = 10_000;

const NO_OUTBOX: OutboxWriter = {
  emit: () => {
    throw new Error("no outbox without Postgres: publish with publishMessages");
  },
};

/**
 * Starts a durable pull consumer (explicit ack) and processes its messages in batches.
 *
 * With `pool`, each batch is ONE transaction: insert the batch's ids into `<schema>.inbox`
 * (ON CONFLICT DO NOTHING; not with `inbox: false`), call `handle` for the new ones with the
 * transaction client, commit (then, with `publishEmitted`, publish what the handlers emitted),
 * then ack every message of the batch. If the batch transaction
 * fails, each message gets its own transaction, so one bad message does not hold back the others. A message
 * whose handling fails is nak'd with `backoffMs` delay; on its `maxDeliver`-th delivery, or
 * at once if it cannot be decoded, it goes to the DLQ and is terminated.
 *
 * Server side, max_deliver is `maxDeliver + 5` so a message whose last attempt crashed the
 * process (or whose DLQ publish failed) comes back and is dead-lettered without being handled.
 */
export async function startConsumer(opts: ConsumerOptions): Promise<BusConsumer> {
  const consumer = new BatchConsumer(opts);
  await consumer.start();
  return consumer;
}

class BatchConsumer implements BusConsumer {
  readonly name: string;
  private readonly log: Logger;
  private readonly batchSize: number;
  private readonly maxDeliver: number;
  private readonly backoffMs: readonly number[];
  private readonly dlq: DlqConfig;
  private readonly registry: Registry;
  private readonly inboxTable: string | null;
  private readonly schema: string | null;
  /** Where emitted messages go after the commit, instead of the outbox. */
  private readonly publishEmitted: StreamPublisher | undefined;
  private readonly call: (d: Delivery, tx: PoolClient | undefined, out: OutboxWriter) => Promise<void>;
  private readonly queue: JsMsg[] = [];
  /** The batch being processed. */
  private processing: readonly JsMsg[] = [];
  private progress: ProgressSignals | null = null;
  private messages: ConsumerMessages | null = null;
  private stopping = false;
  private wakeProcessor: (() => void) | null = null;
  private wakePump: (() => void) | null = null;
  private pump: Promise<void> | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private loop: Promise<void> | null = null;

  constructor(private readonly opts: ConsumerOptions) {
    this.name = opts.durable;
    this.log = opts.logger ?? createLogger("bus-consumer");
    this.batchSize = Math.max(1, opts.batchSize ?? 100);
    this.maxDeliver = Math.max(1, opts.maxDeliver ?? 5);
    this.backoffMs = opts.backoffMs && opts.backoffMs.length > 0 ? opts.backoffMs : [500, 2000, 8000, 30000];
    this.dlq = opts.dlq ?? DEFAULT_DLQ;
    this.registry = opts.registry ?? sagaRegistry;
    if (opts.pool !== undefined) {
      const handle = opts.handle;
      this.inboxTable = opts.inbox === false ? null : `${quoteSchema(opts.schema)}.inbox`;
      this.schema = opts.schema;
      this.publishEmitted = opts.publishEmitted;
      this.call = (d, tx, out) => {
        if (!tx) throw new Error("inbox consumer called without a transaction");
        return handle(d, tx, out);
      };
    } else {
      const handle = opts.handle;
      this.inboxTable = null;
      this.schema = null;
      this.publishEmitted = undefined;
      this.call = (d) => handle(d);
    }
  }

  async start(): Promise<void> {
    const { js, stream, durable } = this.opts;
    const jsm = await js.jetstreamManager();
    const ackWaitMs = this.opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
    const serverMaxDeliver = this.maxDeliver + 5;
    // No server-side `backoff`: with it set (ack_wait multiples), nats-server 2.9.10 did not
    // redeliver a message nak'd a second time with a 100 ms delay within 5 s (its redelivery
    // check uses backoff[n]). Retry delays come from nak(backoffMs[n]); ack_wait covers crashes.
    const settings = {
      max_deliver: serverMaxDeliver,
      ack_wait: nanos(ackWaitMs),
      max_ack_pending: this.opts.maxAckPending ?? Math.max(1000, this.batchSize * 10),
    };
    const config: Partial<ConsumerConfig> = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: this.opts.filterSubject,
      ...settings,
    };
    try {
      await jsm.consumers.add(stream, config);
    } catch (err) {
      // Exists with another configuration: update what can be updated.
      try {
        await jsm.consumers.update(stream, durable, { ...settings, filter_subject: this.opts.filterSubject });
      } catch {
        throw new Error(`cannot create or update consumer ${durable} on ${stream}: ${errorMessage(err)}`);
      }
    }
    const c = await js.consumers.get(stream, durable);
    // Iterator mode (not a callback): nats.js issues the next pull only when the iterator gets
    // past the previous messages, so with the pump waiting while a full batch is queued, at most
    // ~3 batches are held locally and nothing waits long enough to hit ack_wait.
    this.messages = await c.consume({ max_messages: this.batchSize * 2 });
    const messages = this.messages;
    void messages.closed().then((err) => {
      if (err && !this.stopping) this.log.error("consumer stopped unexpectedly", { consumer: this.name, error: errorMessage(err) });
    });
    this.pump = this.runPump(messages);
    this.loop = this.run();
    this.progress = new ProgressSignals(() => this.held(), Math.max(50, ackWaitMs / 4), (n) => busMetrics.progressSignals.inc({ consumer: this.name }, n));
    this.progress.start();
    this.startPruning();
  }

  private startPruning(): void {
    const opts = this.opts;
    if (opts.pool === undefined || this.inboxTable === null) return;
    const retentionMs = opts.inboxRetentionMs ?? 24 * 60 * 60 * 1000;
    if (retentionMs <= 0) return;
    const pool = opts.pool;
    let running = false;
    this.pruneTimer = setInterval(() => {
      if (running || this.stopping) return;
      running = true;
      pruneInbox(pool, opts.schema, this.name, retentionMs)
        .then((n) => {
          if (n > 0) this.log.debug("inbox pruned", { consumer: this.name, rows: n });
        })
        .catch((err: unknown) => this.log.warn("inbox pruning failed", { consumer: this.name, error: errorMessage(err) }))
        .finally(() => {
          running = false;
        });
    }, 60_000);
    this.pruneTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    if (!this.stopping) {
      this.stopping = true;
      // Wake first: close() resolves only once the pump has iterated to the end.
      const closed = this.messages?.close();
      this.wakeAll();
      await closed;
    }
    await Promise.all([this.pump, this.loop]);
    this.progress?.stop();
    // Hand back what was fetched but not processed, so another replica gets it now rather than after ack_wait.
    for (const m of this.queue.splice(0)) m.nak();
  }

  /** Messages fetched and not yet acked, nak'd or dead-lettered (those nats.js still buffers aside). */
  private *held(): Generator<JsMsg> {
    yield* this.queue;
    yield* this.processing;
  }

  private wakeAll(): void {
    this.wakeProcessor?.();
    this.wakePump?.();
  }

  /** Moves fetched messages into the local queue, pausing while a full batch is waiting. */
  private async runPump(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const m of messages) {
        if (this.stopping) {
          m.nak();
          continue;
        }
        this.queue.push(m);
        this.wakeProcessor?.();
        while (this.queue.length >= this.batchSize && !this.stopping) {
          await new Promise<void>((resolve) => {
            this.wakePump = resolve;
          });
          this.wakePump = null;
        }
      }
    } catch (err) {
      if (!this.stopping) this.log.error("consumer fetch loop failed", { consumer: this.name, error: errorMessage(err) });
    }
  }

  /** Processes the queue batch by batch. */
  private async run(): Promise<void> {
    while (!this.stopping) {
      if (this.queue.length === 0) {
        await new Promise<void>((resolve) => {
          this.wakeProcessor = resolve;
        });
        this.wakeProcessor = null;
        // Let the pump move whatever else has already arrived, to fill the batch.
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      const batch = this.queue.splice(0, this.batchSize);
      this.processing = batch;
      this.wakePump?.();
      try {
        await this.processBatch(batch);
      } catch (err) {
        // processBatch handles its own failures; this is a bug guard.
        this.log.error("batch processing failed", { consumer: this.name, error: errorMessage(err) });
        for (const m of batch) m.nak(this.backoffMs[0]);
      } finally {
        this.processing = [];
      }
    }
  }

  private async processBatch(batch: JsMsg[]): Promise<void> {
    const end = busMetrics.batchSeconds.startTimer({ consumer: this.name });
    busMetrics.batchSize.observe({ consumer: this.name }, batch.length);
    const items: Item[] = [];
    for (const m of batch) {
      const count = m.info.deliveryCount;
      if (count > 1) busMetrics.redeliveries.inc({ consumer: this.name });
      if (count > this.maxDeliver) {
        await this.deadLetter(m, `delivered ${count} times (limit ${this.maxDeliver}); the last attempt did not finish`, "max_deliveries");
        continue;
      }
      const type = m.headers?.get(Header.type) ?? "";
      let message: Message;
      try {
        message = decodeMessage(type, m.data, this.registry);
      } catch (err) {
        await this.deadLetter(m, errorMessage(err), "undecodable");
        continue;
      }
      items.push({
        m,
        d: {
          id: messageIdOf(m.headers, m.info.stream, m.seq),
          subject: m.subject,
          type,
          message,
          key: m.headers?.get(Header.key) ?? "",
          headers: m.headers,
          deliveryCount: count,
          streamSeq: m.seq,
          msg: m,
        },
      });
    }
    if (items.length > 0) {
      if (this.opts.pool) await this.processInTransaction(this.opts.pool, items);
      else await this.processDirect(items);
    }
    end();
  }

  private async processInTransaction(pool: Pool, items: Item[]): Promise<void> {
    if (items.length > 1) {
      const done = await this.transactionHeld(pool, items, false).catch((err: unknown) => {
        this.log.warn("batch transaction failed; retrying its messages one by one", { consumer: this.name, size: items.length, error: errorMessage(err) });
        return undefined;
      });
      if (done) return this.settle(items, done);
    }
    for (const it of items) {
      let done: Committed;
      try {
        done = await this.transactionHeld(pool, [it], true);
      } catch (err) {
        await this.failed(it, err);
        continue;
      }
      await this.settle([it], done);
    }
  }

  /**
   * Acks the messages of a committed transaction, after publishing what it emitted (with
   * `publishEmitted`; held and retried until JetStream has it). Stopping before then hands
   * the messages back: they are handled again, and emit the same.
   */
  private async settle(items: Item[], { outcomes, emitted }: Committed): Promise<void> {
    const publisher = this.publishEmitted;
    if (publisher && emitted.length > 0) {
      try {
        await this.retriedWhileUnavailable(() => publishAsGiven(publisher, emitted), () => true, items.length, "cannot publish what a committed batch emitted");
      } catch {
        for (const it of items) it.m.nak();
        return;
      }
    }
    items.forEach((it, i) => this.acked(it, outcomes[i] ?? "processed"));
  }

  /**
   * Runs the transaction; while the database is unreachable (or, with `retryConflicts`, on a
   * deadlock / serialization failure) holds the messages (the batch's progress signals keep
   * JetStream from redelivering them) and tries again with backoff, so an outage does not use up
   * deliveries or dead-letter good messages. Gives up only when stopping.
   */
  private transactionHeld(pool: Pool, items: Item[], retryConflicts: boolean): Promise<Committed> {
    return this.retriedWhileUnavailable(
      () => this.applyInTransaction(pool, items),
      (err, attempt) => retryConflicts && isConflictError(err) && attempt < 10,
      items.length,
    );
  }

  /**
   * Runs `work` until it succeeds; on a connection error (or one `retryAlso` accepts) waits with
   * backoff and tries again while its messages stay held. Throws any other error, and when stopping.
   */
  private async retriedWhileUnavailable<T>(
    work: () => Promise<T>,
    retryAlso: (err: unknown, attempt: number) => boolean,
    size: number,
    trouble = "database unavailable",
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await work();
      } catch (err) {
        if (!(isConnectionError(err) || retryAlso(err, attempt)) || this.stopping) throw err;
        if (attempt === 0 || attempt % 10 === 0) this.log.warn(`${trouble}; holding messages and retrying`, { consumer: this.name, size, attempt, error: errorMessage(err) });
        await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** attempt, 5000) * (0.5 + Math.random() / 2)));
      }
    }
  }

  /** One transaction: inbox rows for the items (if kept), handler for the new ones, outbox rows (unless published after it), commit. */
  private applyInTransaction(pool: Pool, items: Item[]): Promise<Committed> {
    return transaction(pool, async (client) => {
      const fresh = await this.freshIds(client, items);
      const newDeliveries = items.filter((it) => fresh.has(it.d.id)).map((it) => it.d);
      if (newDeliveries.length > 0 && this.opts.pool !== undefined) await this.opts.beforeBatch?.(client, newDeliveries);
      const outcomes: Outcome[] = [];
      const emitted: OutgoingMessage[] = [];
      // A message emitted by a handler continues the trace of the delivery it handles.
      const out: OutboxWriter = {
        emit: (...messages) => {
          const trace = currentTraceHeaders();
          for (const m of messages) emitted.push({ ...m, headers: { ...trace, ...m.headers } });
        },
      };
      for (const it of items) {
        if (fresh.delete(it.d.id)) {
          await this.invoke(it.d, client, out);
          outcomes.push("processed");
        } else {
          outcomes.push("duplicate");
        }
      }
      if (newDeliveries.length > 0 && this.opts.pool !== undefined) await this.opts.afterBatch?.(client, out);
      if (emitted.length > 0 && this.schema && !this.publishEmitted) await enqueueOutbox(client, this.schema, emitted);
      return { outcomes, emitted: this.publishEmitted ? emitted : [] };
    });
  }

  /** The ids of the items not seen before (all of them without the inbox). */
  private async freshIds(client: PoolClient, items: Item[]): Promise<Set<string>> {
    const ids = [...new Set(items.map((it) => it.d.id))];
    if (this.inboxTable === null) return new Set(ids);
    const r = await client.query<{ message_id: string }>(
      prepared(`INSERT INTO ${this.inboxTable} (consumer, message_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING message_id`, [this.name, ids]),
    );
    return new Set(r.rows.map((row) => row.message_id));
  }

  /** A handler failing because the database is unreachable holds its message, as a transaction does. */
  private async processDirect(items: Item[]): Promise<void> {
    const run = async (it: Item): Promise<void> => {
      try {
        await this.retriedWhileUnavailable(() => this.invoke(it.d, undefined, NO_OUTBOX), () => false, 1);
        this.acked(it, "processed");
      } catch (err) {
        await this.failed(it, err);
      }
    };
    if (this.opts.pool === undefined && this.opts.parallel) await Promise.all(items.map(run));
    else for (const it of items) await run(it);
  }

  /** Calls the handler in the message's trace context, inside a CONSUMER span. */
  private invoke(d: Delivery, tx: PoolClient | undefined, out: OutboxWriter): Promise<void> {
    return context.with(extractTraceContext(d.headers), () =>
      tracer.startActiveSpan(
        `${d.subject} process`,
        { kind: SpanKind.CONSUMER, attributes: { "messaging.system": "nats", "messaging.destination.name": d.subject, "messaging.message.id": d.id, "messaging.consumer.group.name": this.name } },
        async (span) => {
          try {
            await this.call(d, tx, out);
          } catch (err) {
            span.recordException(err instanceof Error ? err : new Error(String(err)));
            span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
            throw err;
          } finally {
            span.end();
          }
        },
      ),
    );
  }

  private acked(it: Item, outcome: Outcome): void {
    it.m.ack();
    busMetrics.messages.inc({ consumer: this.name, outcome });
  }

  private async failed(it: Item, err: unknown): Promise<void> {
    const count = it.m.info.deliveryCount;
    if (count >= this.maxDeliver && !isConnectionError(err)) {
      await this.deadLetter(it.m, errorMessage(err), "handler_failed");
      return;
    }
    const delay = this.backoffMs[Math.min(count - 1, this.backoffMs.length - 1)] ?? 1000;
    it.m.nak(delay);
    busMetrics.messages.inc({ consumer: this.name, outcome: "retried" });
    this.log.warn("message failed; will retry", { consumer: this.name, subject: it.m.subject, message_id: it.d.id, delivery: count, retry_in_ms: delay, error: errorMessage(err) });
  }

  private async deadLetter(m: JsMsg, error: string, reason: string): Promise<void> {
    try {
      await publishDeadLetter(this.opts.js, m, error, this.name, this.dlq);
      m.term();
      busMetrics.deadLetters.inc({ consumer: this.name, reason });
      busMetrics.messages.inc({ consumer: this.name, outcome: "dead_lettered" });
      this.log.error("message dead-lettered", { consumer: this.name, subject: m.subject, stream_seq: m.seq, delivery: m.info.deliveryCount, reason, error });
    } catch (err) {
      // Keep it: it comes back (server max_deliver has slack) and is dead-lettered then.
      m.nak(this.backoffMs[this.backoffMs.length - 1]);
      this.log.error("cannot publish dead letter; will retry", { consumer: this.name, subject: m.subject, stream_seq: m.seq, error: errorMessage(err) });
    }
  }
}
