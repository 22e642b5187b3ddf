import type { Message, Registry } from "@bufbuild/protobuf";
import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { Pool, PoolClient } from "pg";
import { prepared, transaction } from "../db.js";
import { errorMessage } from "../errors.js";
import { createLogger, type Logger } from "../logger.js";
import { labelSets } from "../metrics.js";
import { decodeMessage, sagaRegistry } from "./codec.js";
import type { BusConsumer, ConsumerOptions, Delivery, OutboxWriter } from "./consumer-options.js";
import { publishWire, receivedEntries, sizeOf, type ReceivedEntry, type WireMessage, wireMessages, type WireOutcome } from "./bundle.js";
import { DeadLetters } from "./dead-letters.js";
import { HeartbeatRest } from "./heartbeat-rest.js";
import { ensureDurableConsumer } from "./durable.js";
import type { StreamPublisher } from "./jetstream-publisher.js";
import { busMetrics } from "./metrics.js";
import { DEFAULT_DLQ, quoteSchema } from "./names.js";
import { enqueueOutbox } from "./outbox.js";
import { isConflictError, isConnectionError } from "../pgerrors.js";
import { ProgressSignals } from "./progress.js";
import { startInboxPruning } from "./inbox-pruning.js";
import { assertSendableDirectly, type OutgoingMessage } from "./publish.js";
import { Settlement } from "./settlement.js";
import { currentTraceHeaders, inConsumerSpan, producerSpans } from "./trace.js";

interface Item {
  m: JsMsg;
  /** The JetStream message's outcome, shared by the entries of a bundle. */
  s: Settlement;
  /** The bus message: `m` itself, or one entry of the bundle `m` carries. */
  e: ReceivedEntry;
  d: Delivery;
}

type Outcome = "processed" | "duplicate";

/** What a committed batch transaction leaves to do: ack each message, publish what was emitted (`publishEmitted`). */
interface Committed {
  outcomes: Outcome[];
  emitted: OutgoingMessage[];
}

/** Short enough that what a crashed process held is back within seconds (see ackWaitMs). */
const DEFAULT_ACK_WAIT_MS = 10_000;

/**
 * Messages still expected from the pulls in flight at which nats.js asks for more. Its default
 * (three quarters of `prefetch`) sends a pull request every quarter: with a small prefetch, one
 * for every other message. Asking when three quarters have arrived sends a quarter as many, and
 * a quarter of `prefetch` is still on its way while the next request travels.
 */
function refillBelow(prefetch: number): number {
  return Math.max(1, Math.floor(prefetch / 4));
}

/**
 * How long a pull request waits for messages, and the server's heartbeat while it waits. When
 * JetStream refuses a pull (409: a limit exceeded, a leadership change), or a pull the client
 * counts on is not at the server, nats.js issues no other until two heartbeats are missed; with
 * its defaults (30 s, 15 s) that left a consumer idle for 30 s and more with its stream backed
 * up. Bench runs at 800/s saw fraud's command consumer wait 4.0 s, two heartbeats of 2 s, with
 * nothing refused; at 1 s it is about 2 s. The heartbeats flow only while a consumer is idle.
 */
const PULL_EXPIRES_MS = 10_000;
const PULL_HEARTBEAT_MS = 1_000;

/**
 * An OutboxWriter that collects into `emitted`; a message continues the trace of the delivery
 * whose handler emits it. `direct`: the messages are to be published after the commit, not
 * through the outbox, and one that could never be sent fails its handler at once.
 */
function collectInto(emitted: OutgoingMessage[], direct: boolean): OutboxWriter {
  return {
    emit: (...messages) => {
      if (direct) for (const m of messages) assertSendableDirectly(m);
      const trace = currentTraceHeaders();
      for (const m of messages) emitted.push({ ...m, headers: { ...trace, ...m.headers } });
    },
  };
}

const NO_OUTBOX: OutboxWriter = {
  emit: () => {
    throw new Error("this consumer has no outbox: give it publishEmitted, or publish with publishMessages");
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
  private readonly registry: Registry;
  private readonly inboxTable: string | null;
  private readonly schema: string | null;
  /** Where emitted messages go after the commit, instead of the outbox. */
  private readonly publishEmitted: StreamPublisher | undefined;
  private readonly call: (d: Delivery, tx: PoolClient | undefined, out: OutboxWriter) => Promise<void>;
  private readonly queue: JsMsg[] = [];
  private readonly messageLabels = labelSets((outcome: Outcome | "retried" | "dead_lettered") => ({ consumer: this.name, outcome }));
  /** Most batches processed at once (`batchesInFlight`). */
  private readonly maxBatches: number;
  /** The batches being processed. */
  private readonly processing = new Set<readonly JsMsg[]>();
  private progress: ProgressSignals | null = null;
  private messages: ConsumerMessages | null = null;
  private stopping = false;
  private wakeProcessor: (() => void) | null = null;
  private wakePump: (() => void) | null = null;
  private pump: Promise<void> | null = null;
  private stopPruning: (() => void) | null = null;
  private readonly deadLetters: DeadLetters;
  private loop: Promise<void> | null = null;

  constructor(private readonly opts: ConsumerOptions) {
    this.name = opts.durable;
    this.log = opts.logger ?? createLogger("bus-consumer");
    this.batchSize = Math.max(1, opts.batchSize ?? 100);
    this.maxDeliver = Math.max(1, opts.maxDeliver ?? 5);
    this.backoffMs = opts.backoffMs && opts.backoffMs.length > 0 ? opts.backoffMs : [500, 2000, 8000, 30000];
    this.registry = opts.registry ?? sagaRegistry;
    this.maxBatches = opts.pool === undefined && opts.parallel ? Math.max(1, opts.batchesInFlight ?? 1) : 1;
    busMetrics.redeliveries.inc({ consumer: this.name }, 0);
    this.deadLetters = new DeadLetters({
      js: opts.js,
      dlq: opts.dlq ?? DEFAULT_DLQ,
      consumer: this.name,
      log: this.log,
      retryDelayMs: this.backoffMs[this.backoffMs.length - 1],
      counted: () => busMetrics.messages.inc(this.messageLabels("dead_lettered")),
    });
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
      this.publishEmitted = opts.publishEmitted;
      this.call = (d, _tx, out) => handle(d, out);
    }
  }

  async start(): Promise<void> {
    const { js, stream, durable } = this.opts;
    const ackWaitMs = this.opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
    await ensureDurableConsumer(js, {
      stream,
      durable,
      filterSubject: this.opts.filterSubject,
      ackWaitMs,
      // Slack over maxDeliver: a message whose last attempt crashed the process (or whose DLQ
      // publish failed) comes back and is dead-lettered without being handled.
      maxDeliver: this.maxDeliver + 5,
      maxAckPending: this.opts.maxAckPending ?? Math.max(1000, this.batchSize * 10),
    });
    const c = await js.consumers.get(stream, durable);
    // Iterator mode (not a callback): nats.js issues the next pull only when the iterator gets
    // past the previous messages, so with the pump waiting while a full batch is queued, at most
    // ~3 batches are held locally and nothing waits long enough to hit ack_wait. Bundles count
    // as one message here, so a queue of bundles holds more work than that (measured: pausing on
    // the queue's entries instead starved the consumer between pulls, end-to-end p50 at 1,200/s
    // ~1.1 s against 0.2–0.5 s); a byte bound would suit them, but a message larger than it
    // stops nats.js's pulls for good. `prefetch` messages (2 × batchSize) wait unsignalled at most.
    const prefetch = Math.max(1, this.opts.prefetch ?? this.batchSize * 2);
    this.messages = await c.consume({ max_messages: prefetch, threshold_messages: refillBelow(prefetch), expires: PULL_EXPIRES_MS, idle_heartbeat: PULL_HEARTBEAT_MS });
    const messages = this.messages;
    void messages.closed().then((err) => {
      if (err && !this.stopping) this.log.error("consumer stopped unexpectedly", { consumer: this.name, error: errorMessage(err) });
    });
    void this.reportPullTrouble(messages);
    this.pump = this.runPump(messages);
    this.loop = this.run();
    this.progress = new ProgressSignals(() => this.held(), Math.max(50, ackWaitMs / 4), (n) => busMetrics.progressSignals.inc({ consumer: this.name }, n));
    this.progress.start();
    this.startPruning();
  }

  /** Logs what leaves the consumer without messages for a while: refused pulls and missed heartbeats. */
  private async reportPullTrouble(messages: ConsumerMessages): Promise<void> {
    for await (const note of messages.status()) {
      if (this.stopping) return;
      if (note.type === "exceeded_limits") this.log.warn("JetStream refused a pull; pulling again after missed heartbeats", { consumer: this.name, code: note.code, reason: note.description });
      else if (note.type === "heartbeats_missed") this.log.warn("pull heartbeats missed; pulling again", { consumer: this.name, missed: note.count });
    }
  }

  private startPruning(): void {
    const opts = this.opts;
    if (opts.pool === undefined || this.inboxTable === null) return;
    const retentionMs = opts.inboxRetentionMs ?? 24 * 60 * 60 * 1000;
    if (retentionMs > 0) this.stopPruning = startInboxPruning({ pool: opts.pool, schema: opts.schema, consumer: this.name, retentionMs, log: this.log });
  }

  async stop(): Promise<void> {
    this.stopPruning?.();
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
    for (const batch of this.processing) yield* batch;
  }

  private wakeAll(): void {
    this.wakeProcessor?.();
    this.wakePump?.();
  }

  /** Moves fetched messages into the local queue, pausing while a full batch is waiting. */
  private async runPump(messages: ConsumerMessages): Promise<void> {
    const rest = new HeartbeatRest(messages, PULL_HEARTBEAT_MS);
    try {
      for await (const m of messages) {
        if (this.stopping) {
          m.nak();
          continue;
        }
        this.queue.push(m);
        this.wakeProcessor?.();
        if (this.queue.length < this.batchSize || this.stopping) continue;
        rest.begin();
        while (this.queue.length >= this.batchSize && !this.stopping) {
          await new Promise<void>((resolve) => {
            this.wakePump = resolve;
          });
          this.wakePump = null;
        }
        rest.end(this.stopping);
      }
    } catch (err) {
      if (!this.stopping) this.log.error("consumer fetch loop failed", { consumer: this.name, error: errorMessage(err) });
    }
  }

  /** Processes the queue batch by batch, up to `maxBatches` at once. */
  private async run(): Promise<void> {
    while (!this.stopping) {
      const empty = this.queue.length === 0;
      if (empty || this.processing.size >= this.maxBatches) {
        await new Promise<void>((resolve) => {
          this.wakeProcessor = resolve;
        });
        this.wakeProcessor = null;
        // Let the pump move whatever else has already arrived, to fill the batch.
        if (empty) await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      const batch = this.takeBatch();
      this.processing.add(batch);
      this.wakePump?.();
      const done = this.processBatch(batch)
        .catch((err: unknown) => {
          // processBatch handles its own failures; this is a bug guard.
          this.log.error("batch processing failed", { consumer: this.name, error: errorMessage(err) });
          for (const m of batch) m.nak(this.backoffMs[0]);
        })
        .finally(() => {
          this.processing.delete(batch);
          this.wakeProcessor?.();
        });
      if (this.maxBatches === 1) await done;
    }
    while (this.processing.size > 0) {
      await new Promise<void>((resolve) => {
        this.wakeProcessor = resolve;
      });
    }
  }

  /** The oldest queued messages carrying up to `batchSize` bus messages (bundles count their entries); at least one. */
  private takeBatch(): JsMsg[] {
    let entries = 0;
    let n = 0;
    for (const m of this.queue) {
      const size = sizeOf(m.headers);
      if (n > 0 && entries + size > this.batchSize) break;
      entries += size;
      n += 1;
    }
    return this.queue.splice(0, n);
  }

  private async processBatch(batch: JsMsg[]): Promise<void> {
    const end = busMetrics.batchSeconds.startTimer({ consumer: this.name });
    const items: Item[] = [];
    for (const m of batch) {
      const count = m.info.deliveryCount;
      if (count > 1) busMetrics.redeliveries.inc({ consumer: this.name });
      let entries: ReceivedEntry[];
      try {
        entries = receivedEntries(m.headers, m.data, { stream: m.info.stream, seq: m.seq });
      } catch (err) {
        await this.deadLetters.send(m, errorMessage(err), "undecodable");
        continue;
      }
      const settlement = new Settlement(m, entries.length);
      if (count > this.maxDeliver) {
        // A bundle's entries go to the DLQ one by one, as the messages they are.
        const error = `delivered ${count} times (limit ${this.maxDeliver}); the last attempt did not finish`;
        for (const e of entries) await this.deadLetters.send(m, error, "max_deliveries", { s: settlement, e });
        continue;
      }
      for (const e of entries) {
        let message: Message;
        try {
          message = decodeMessage(e.type, e.payload, this.registry);
        } catch (err) {
          await this.deadLetters.send(m, errorMessage(err), "undecodable", { s: settlement, e });
          continue;
        }
        items.push({
          m,
          s: settlement,
          e,
          d: { id: e.id, subject: m.subject, type: e.type, message, key: e.key, headers: e.headers, deliveryCount: count, streamSeq: m.seq, msg: m },
        });
      }
    }
    busMetrics.batchSize.observe({ consumer: this.name }, items.length);
    if (items.length > 0) {
      if (this.opts.pool) await this.processInTransaction(this.opts.pool, items);
      else await this.processDirect(items);
    }
    end();
  }

  private async processInTransaction(pool: Pool, items: Item[]): Promise<void> {
    if (items.length > 1) {
      const done = await this.transactionHeld(pool, items, false).catch((err: unknown) => {
        if (!this.stopping) this.log.warn("batch transaction failed; retrying its messages one by one", { consumer: this.name, size: items.length, error: errorMessage(err) });
        return undefined;
      });
      if (done) return this.settle(items, done);
    }
    for (const it of items) {
      // Stopping (an outage's retries end there): what is not applied goes back as it came, not
      // one transaction at a time against a database that may not answer, nor to the DLQ.
      if (this.stopping) {
        it.s.retry();
        continue;
      }
      let done: Committed;
      try {
        done = await this.transactionHeld(pool, [it], true);
      } catch (err) {
        if (this.stopping && isConnectionError(err)) it.s.retry();
        else await this.failed(it, err);
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
      let wire: WireMessage[];
      const producing = producerSpans(emitted);
      try {
        wire = wireMessages(producing.messages);
      } catch (err) {
        producing.end(err);
        // What was emitted cannot be sent at all (a bug), however long the bus is waited for:
        // the messages go the way of a failed handler, in the end to the DLQ.
        for (const it of items) await this.failed(it, err);
        return;
      }
      // Each message's producer span ends at its own ack; a retry sends only those not acknowledged yet.
      const unacknowledged = new Set(wire);
      const acknowledged = (w: WireMessage, { ack }: WireOutcome): void => {
        // An attempt that failed may still hear an ack, after the next attempt sent the message again.
        if (ack && unacknowledged.delete(w)) producing.end(undefined, w.positions);
      };
      try {
        await this.retriedWhileUnavailable(() => publishWire(publisher, [...unacknowledged], acknowledged), () => true, items.length, "cannot publish what a committed batch emitted");
      } catch (err) {
        for (const w of unacknowledged) producing.end(err, w.positions);
        unacknowledged.clear();
        for (const it of items) it.s.retry();
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
      const out = collectInto(emitted, this.publishEmitted !== undefined);
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

  /**
   * A handler failing because the database is unreachable holds its message, as a transaction does.
   * With `publishEmitted`, what the batch's successful handlers emitted is published together
   * (bundled) before their messages are acked.
   */
  private async processDirect(items: Item[]): Promise<void> {
    const publishing = this.publishEmitted !== undefined;
    const handled: Item[] = [];
    const emitted: OutgoingMessage[] = [];
    const run = async (it: Item): Promise<void> => {
      let own: OutgoingMessage[] = [];
      try {
        const attempt = (): Promise<void> => {
          own = [];
          return this.invoke(it.d, undefined, publishing ? collectInto(own, true) : NO_OUTBOX);
        };
        await this.retriedWhileUnavailable(attempt, () => false, 1);
      } catch (err) {
        await this.failed(it, err);
        return;
      }
      if (!publishing) return this.acked(it, "processed");
      handled.push(it);
      emitted.push(...own);
    };
    if (this.opts.pool === undefined && this.opts.parallel) await Promise.all(items.map(run));
    else for (const it of items) await run(it);
    if (handled.length > 0) await this.settle(handled, { outcomes: handled.map((): Outcome => "processed"), emitted });
  }

  /** Calls the handler in the message's trace context, inside a CONSUMER span. */
  private invoke(d: Delivery, tx: PoolClient | undefined, out: OutboxWriter): Promise<void> {
    return inConsumerSpan(d, this.name, () => this.call(d, tx, out));
  }

  private acked(it: Item, outcome: Outcome): void {
    it.s.done();
    busMetrics.messages.inc(this.messageLabels(outcome));
  }

  private async failed(it: Item, err: unknown): Promise<void> {
    const count = it.m.info.deliveryCount;
    if (count >= this.maxDeliver && !isConnectionError(err)) {
      await this.deadLetters.send(it.m, errorMessage(err), "handler_failed", it);
      return;
    }
    const delay = this.backoffMs[Math.min(count - 1, this.backoffMs.length - 1)] ?? 1000;
    it.s.retry(delay);
    busMetrics.messages.inc(this.messageLabels("retried"));
    this.log.warn("message failed; will retry", { consumer: this.name, subject: it.m.subject, message_id: it.d.id, delivery: count, retry_in_ms: delay, error: errorMessage(err) });
  }
}
