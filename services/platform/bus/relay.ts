import type { Pool, PoolClient } from "pg";
import { prepared } from "../db.js";
import { errorMessage } from "../errors.js";
import { createLogger, type Logger } from "../logger.js";
import { busMetrics } from "./metrics.js";
import { outboxChannel, quoteSchema } from "./names.js";
import { type OutboxRecord, registerLocalRelay } from "./outbox.js";
import type { StreamPublisher } from "./jetstream-publisher.js";
import { bundleForWire, DEFAULT_BUNDLE_MAX, publishWire } from "./bundle.js";
import { producerSpans } from "./trace.js";

export interface OutboxRelayOptions {
  pool: Pool;
  /** The service's schema holding `outbox`. */
  schema: string;
  /** Where the rows go: the bus connection's JetStreamPublisher (nats.js's JetStreamClient works too). */
  publisher: StreamPublisher;
  /** Rows claimed and published (pipelined) per transaction (default 500). */
  batchSize?: number;
  /** Most rows of one subject sent as one JetStream message (default 64; 1 sends each alone). */
  bundleMax?: number;
  /** Polling backstop when no NOTIFY arrives (default 500 ms). */
  pollMs?: number;
  /** Poll interval for 1 s after a NOTIFY from another process (default 20 ms). */
  busyPollMs?: number;
  /**
   * Be handed this process's committed rows, whose writers then send no NOTIFY (default true).
   * false: rely on NOTIFY alone, as for writers elsewhere — for code whose transactions do
   * not call `committed` (see services/platform/db.ts).
   */
  localWake?: boolean;
  /** How long acknowledged rows wait to be marked with others (default 100 ms). */
  markDelayMs?: number;
  /** How often a stand-by replica tries to become the leader (default 1000 ms). */
  leaderRetryMs?: number;
  /**
   * Published rows are kept this long, then deleted (default 0: deleted at publish — JetStream's
   * stream keeps what was published; kept rows cost Postgres a second write and a cleanup each).
   */
  retentionMs?: number;
  /** Rows one statement of the cleanup deletes; it repeats until fewer are left (default 5,000). */
  cleanupChunk?: number;
  logger?: Logger;
}


/**
 * The statement that marks the rows of ids `$<param>` published (or deletes them, without
 * retention). `published_at IS NULL` lets it find them through the index of unpublished rows.
 */
export function markOutboxSql(schemaSql: string, retentionMs: number, param: number): string {
  const acked = `id = ANY($${param}::bigint[]) AND published_at IS NULL`;
  return retentionMs === 0 ? `DELETE FROM ${schemaSql}.outbox WHERE ${acked}` : `UPDATE ${schemaSql}.outbox SET published_at = now() WHERE ${acked}`;
}

/**
 * Marks rows with `mark` (ids `$3`) and reads the oldest `$1` unpublished rows but those of ids
 * `$2` and those of the domains `$4` (held back), in one statement. The read sees the
 * statement's snapshot, before the mark, so rows being marked are among those excluded. The
 * exclusions are hashed subplans: `NOT (id = ANY($2))` would compare each row walked with every
 * id, and under a backlog both run to thousands.
 */
export function readOutboxSql(schemaSql: string, mark: string): string {
  return `WITH marked AS (${mark})
   SELECT id, msg_id AS "msgId", subject, type, payload, headers, key FROM ${schemaSql}.outbox
    WHERE published_at IS NULL AND id NOT IN (SELECT unnest($2::bigint[]))
      AND split_part(subject, '.', 1) NOT IN (SELECT unnest($4::text[])) ORDER BY id LIMIT $1`;
}

/**
 * The backlog the gauge shows: unpublished rows counted exactly up to `$1`, and past that the
 * span of their ids (two index lookups; an upper bound, as ids of rolled-back inserts fall in
 * it). Counting a backlog of a million rows took Postgres 74–160 ms, which every replica would
 * spend once a second just when the relay has the most to catch up on.
 */
export function outboxBacklogSql(schemaSql: string): string {
  return `SELECT (CASE WHEN c.n <= $1::int THEN c.n ELSE s.span END)::int AS n
    FROM (SELECT count(*) AS n FROM (SELECT FROM ${schemaSql}.outbox WHERE published_at IS NULL LIMIT $1::int + 1) unpublished) c,
         (SELECT coalesce(max(id) - min(id) + 1, 0) AS span FROM ${schemaSql}.outbox WHERE published_at IS NULL) s`;
}

/** Up to this many unpublished rows, the backlog gauge counts them (see outboxBacklogSql). */
const backlogCountedUpTo = 10_000;

/** Longest pause between attempts to publish while JetStream refuses or does not answer. */
const MAX_PUBLISH_RETRY_MS = 2_000;

/**
 * A publish JetStream refused (a stream at its byte bound) or did not answer: the outbox's
 * connection and lead are fine. `domains`: those of the subjects that failed.
 */
class PublishFailed extends Error {
  constructor(
    cause: unknown,
    readonly domains: ReadonlySet<string> = new Set(),
  ) {
    super(errorMessage(cause), { cause });
  }
}

/** A subject's domain, its first token: `inventory.cmd.reserve` -> `inventory` (one stream, or two, per domain). */
function domainOf(subject: string): string {
  const dot = subject.indexOf(".");
  return dot < 0 ? subject : subject.slice(0, dot);
}

/**
 * Publishes `<schema>.outbox` rows to JetStream.
 *
 * One leader per schema: the relay holds `pg_try_advisory_lock` on a dedicated connection
 * (other replicas stand by and retry), which keeps per-key order with several replicas.
 * The leader, on that same connection, LISTENs on `<schema>_outbox` and loops: it reads the
 * oldest unpublished rows (`ORDER BY id` — never `id > last_seen`, so a slow transaction's
 * row is picked up once it commits), publishes them — the rows of one subject bundled into
 * one JetStream message (`bundleForWire`), a row alone with msgID = `msg_id` — and, once every
 * ack is in, marks them published; the next batch is read and published meanwhile (the
 * rows in flight are excluded), so publishing is not held up by acks and marks. A crash
 * between publish and mark re-publishes the rows, which JetStream drops as duplicates
 * within its window. The messages of a key go out in row order; only a failed publish (the
 * rows are read again) can put a message behind later ones, which the saga tolerates (effects
 * keyed by order, tombstones, replies matched to the current step: docs/saga-contract.md).
 * When a publish fails, the rows of its subjects' domains are held back and tried again after
 * 0.5, 1, then every 2 s, oldest first, while the rows of the other domains go on: a stream
 * refusing at its byte bound (its consumer down, say) holds up its own messages, not every saga.
 * Rows committed by its own process are handed to it (see `registerLocalRelay`) and published
 * at once, without being read back; their marks wait up to `markDelayMs` to be written
 * together (by an UPDATE alone: the outbox is read only when a read is due), a crash in
 * between only publishes them again. Rows of other processes arrive by
 * NOTIFY; polling every `pollMs` is the backstop, every `busyPollMs` for a second after a
 * NOTIFY (other processes' writers throttle theirs). If the dedicated connection drops, the
 * lock goes with it and another replica takes over.
 */
export class OutboxRelay {
  private readonly opts: Required<Omit<OutboxRelayOptions, "logger">>;
  private readonly log: Logger;
  private readonly s: string;
  private client: PoolClient | null = null;
  private leader = false;
  private stopping = false;
  private dirty = false;
  /** Acks arrived: the loop marks them after `markDelayMs`. */
  private markDue = false;
  /**
   * No unpublished row is left for the loop to read: handed-over rows may go out at once
   * without overtaking older rows of their key. Set by a read that found less than a batch
   * and began after the last row was left to the loop.
   */
  private caughtUp = false;
  /** Counts hand-overs left to the loop. */
  private leftToLoop = 0;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private lastBacklogAt = 0;
  private lastCleanupAt = 0;
  /** The cleanup under way, on a pool connection of its own (never rejects). */
  private cleaning: Promise<void> | undefined;
  private lastRemoteNotificationAt = 0;
  private lastReadAt = 0;
  private unregisterLocal: () => void = () => undefined;
  /** Ids of rows being published, not yet acknowledged. */
  private readonly inFlight = new Set<string>();
  /** Ids of rows acknowledged by JetStream, to be marked by the next read of the outbox. */
  private readonly acked = new Set<string>();
  /** The chain of batches waiting for their acks (never rejects). */
  private marking: Promise<void> = Promise.resolve();
  /** Why a batch failed to publish or mark: the loop reconnects and re-reads its rows. */
  private failure: unknown;
  /** Attempts in a row whose publishes failed. */
  private publishFailures = 0;
  /** Domains whose rows wait, after a failed publish, until `heldUntil`; the others' go on. */
  private readonly held = new Set<string>();
  private heldUntil = 0;

  constructor(opts: OutboxRelayOptions) {
    this.opts = { batchSize: 500, bundleMax: DEFAULT_BUNDLE_MAX, pollMs: 500, busyPollMs: 20, localWake: true, markDelayMs: 100, leaderRetryMs: 1000, retentionMs: 0, cleanupChunk: 5_000, ...opts };
    this.s = quoteSchema(opts.schema);
    this.log = opts.logger ?? createLogger("outbox-relay");
  }

  /** True while this relay holds the leader lock. */
  get isLeader(): boolean {
    return this.leader;
  }

  start(): this {
    if (!this.loop) this.loop = this.run();
    return this;
  }

  /** Stops once the batches in flight are acknowledged and marked; releases the lock. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
    await this.cleaning;
    this.loop = null;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        if (!this.client) await this.connect();
        const client = this.client;
        if (!client) continue;
        if (!this.leader) {
          this.leader = await this.tryLock(client);
          if (!this.leader) {
            await this.updateBacklog(client);
            await this.sleep(this.opts.leaderRetryMs);
            continue;
          }
          this.log.info("outbox relay is the leader", { schema: this.opts.schema });
          await client.query(`LISTEN "${outboxChannel(this.opts.schema)}"`);
          if (this.opts.localWake) this.unregisterLocal = registerLocalRelay(this.opts.schema, { publishCommitted: this.publishCommitted });
        }
        if (this.held.size > 0 && Date.now() >= this.heldUntil) {
          // Their turn again, oldest first.
          this.held.clear();
          this.caughtUp = false;
        }
        const readDue = this.dirty || !this.caughtUp || this.untilNextRead() === 0;
        this.dirty = false;
        this.markDue = false;
        let fullBatch = false;
        if (readDue) {
          const leftBefore = this.leftToLoop;
          const n = await this.drain(client);
          this.lastReadAt = Date.now();
          fullBatch = n >= this.opts.batchSize;
          if (!fullBatch && this.leftToLoop === leftBefore) this.caughtUp = true;
        } else {
          // Only acks came in (for rows handed over): mark them without reading the outbox.
          await this.mark(client);
        }
        await this.updateBacklog(client);
        this.cleanup();
        if (fullBatch || this.dirty) continue;
        if (!this.dirty && !this.markDue) await this.sleep(this.untilNextRead());
        // Acks that come in meanwhile join these marks (they do not cut the wait short).
        if (!this.dirty && this.markDue) await this.sleep(this.opts.markDelayMs);
      } catch (err) {
        if (err instanceof PublishFailed) {
          // Rows stay unpublished. The relay keeps its connection and lead; the failed domains'
          // rows wait longer each time (new rows do not hurry them), the others' are read on.
          this.publishFailures += 1;
          if (this.publishFailures === 1 || this.publishFailures % 20 === 0) this.log.error("outbox relay error", { schema: this.opts.schema, error: err.message, attempts: this.publishFailures, held: [...err.domains] });
          await this.settle();
          const waitMs = Math.min(this.opts.pollMs * 2 ** (this.publishFailures - 1), MAX_PUBLISH_RETRY_MS);
          if (err.domains.size === 0) {
            await this.sleep(waitMs, true);
            continue;
          }
          for (const domain of err.domains) this.held.add(domain);
          this.heldUntil = Date.now() + waitMs;
          continue;
        }
        this.log.error("outbox relay error", { schema: this.opts.schema, error: errorMessage(err) });
        await this.settle();
        this.disconnect(err);
        await this.sleep(this.opts.pollMs);
      }
    }
    await this.settle();
    if (this.client && this.acked.size > 0) await this.mark(this.client).catch((err: unknown) => this.log.warn("outbox relay could not mark its last rows; they will be published again (JetStream drops the duplicates)", { schema: this.opts.schema, error: errorMessage(err) }));
    this.disconnect(undefined);
  }

  /**
   * Waits until every published batch is acknowledged (or has failed), and forgets the
   * failure; acknowledged rows stay to be marked, the others are read again.
   */
  private async settle(): Promise<void> {
    await this.marking;
    this.inFlight.clear();
    this.failure = undefined;
  }

  private markSql(param: number): string {
    return markOutboxSql(this.s, this.opts.retentionMs, param);
  }

  /** Marks the acknowledged rows. */
  private async mark(client: PoolClient): Promise<void> {
    const ids = [...this.acked];
    if (ids.length === 0) return;
    await client.query(prepared(this.markSql(1), [ids]));
    for (const id of ids) this.acked.delete(id);
  }

  /**
   * Time left before the outbox is read again (the backstop poll; while other processes write,
   * the fast one: they skip most NOTIFYs under load, enqueueOutbox notify "auto"). Rows this
   * process writes are handed over and need no read: a read walks the unpublished-rows index,
   * whose entries for published rows stay until VACUUM, so it costs more the more was published.
   */
  private untilNextRead(): number {
    const busy = Date.now() - this.lastRemoteNotificationAt < 1000;
    const untilPoll = Math.max(0, this.lastReadAt + (busy ? this.opts.busyPollMs : this.opts.pollMs) - Date.now());
    // Held-back rows are read again when their wait is over.
    return this.held.size > 0 ? Math.min(untilPoll, Math.max(0, this.heldUntil - Date.now())) : untilPoll;
  }

  private async connect(): Promise<void> {
    const client = await this.opts.pool.connect();
    client.on("error", this.onClientError);
    client.on("notification", this.onNotification);
    this.client = client;
  }

  private readonly onClientError = (err: Error): void => {
    this.log.warn("outbox relay connection error", { schema: this.opts.schema, error: err.message });
  };

  /** A NOTIFY: another process wrote (this one's writers do not notify while it leads). */
  private readonly onNotification = (): void => {
    this.lastRemoteNotificationAt = Date.now();
    this.readSoon();
  };

  /** Unpublished rows wait in the outbox: the loop reads again without sleeping. */
  private readSoon(): void {
    this.dirty = true;
    this.wake?.();
  }

  /** A publish failed: the loop settles, reconnects and reads the unmarked rows again. */
  private fail(err: unknown): void {
    this.failure ??= err;
    this.caughtUp = false;
    this.wake?.();
  }

  /**
   * Rows this process committed: published now, unless older rows may still wait to be read
   * (they would be overtaken) or the relay is not in a state to (not leading, stopping,
   * failed, too much in flight) — then the loop reads them instead, in order. A row the loop
   * has read meanwhile is not published twice.
   */
  private readonly publishCommitted = (records: readonly OutboxRecord[]): void => {
    const heldBack = this.held.size > 0 && records.some((r) => this.held.has(domainOf(r.subject)));
    if (heldBack || !this.caughtUp || !this.leader || this.stopping || this.failure !== undefined || this.inFlight.size >= this.opts.batchSize * 2) {
      this.caughtUp = false;
      this.leftToLoop += 1;
      this.readSoon();
      return;
    }
    try {
      this.publish(records);
    } catch (err) {
      // Runs inside the writer's commit callbacks: a failure here is the relay's, not the write's.
      this.fail(new PublishFailed(err));
    }
  };

  /** Drops the dedicated connection (destroying it releases the advisory lock and LISTEN). */
  private disconnect(err: unknown): void {
    const client = this.client;
    this.client = null;
    if (this.leader) this.log.info("outbox relay gives up leadership", { schema: this.opts.schema });
    this.leader = false;
    this.caughtUp = false;
    this.unregisterLocal();
    this.unregisterLocal = () => undefined;
    if (!client) return;
    client.off("notification", this.onNotification);
    client.release(err instanceof Error ? err : true);
    // keep the error listener: a destroyed socket may still emit
  }

  private async tryLock(client: PoolClient): Promise<boolean> {
    const r = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock(hashtext($1)) AS locked", [`orderflow.outbox.${this.opts.schema}`]);
    return r.rows[0]?.locked === true;
  }

  /**
   * In one statement, marks the rows acknowledged since the last read and reads the oldest
   * unpublished rows not in flight, then publishes them; their acks are awaited in the
   * background (`marking`), so the next batch is read and published while this one is
   * acknowledged. Returns the number of rows read.
   */
  private async drain(client: PoolClient): Promise<number> {
    if (this.failure !== undefined) throw this.failure;
    if (this.inFlight.size >= this.opts.batchSize * 2) await this.marking;
    const marks = [...this.acked];
    const { rows } = await client.query<OutboxRecord>(prepared(readOutboxSql(this.s, this.markSql(3)), [this.opts.batchSize, [...this.inFlight, ...marks], marks, [...this.held]]));
    for (const id of marks) this.acked.delete(id);
    this.publish(rows);
    return rows.length;
  }

  /**
   * Publishes rows (pipelined) but those already on their way (a row read while its writer
   * handed it over, or handed over twice); their acks are awaited in turn on the `marking`
   * chain, which then queues them to be marked, or records the failure for the loop.
   */
  private publish(candidates: readonly OutboxRecord[]): void {
    const rows = candidates.filter((r) => !this.inFlight.has(r.id) && !this.acked.has(r.id));
    if (rows.length === 0) return;
    const ids = rows.map((r) => r.id);
    for (const id of ids) this.inFlight.add(id);
    const producing = producerSpans(rows.map((r) => ({ subject: r.subject, type: r.type, payload: r.payload, id: r.msgId, key: r.key, headers: r.headers })));
    const wire = bundleForWire(producing.messages, this.opts.bundleMax);
    let duplicates = 0;
    const failedDomains = new Set<string>();
    let outcomes = 0;
    let allOutcomes!: () => void;
    const everyOutcome = new Promise<void>((resolve) => (allOutcomes = resolve));
    const acks = publishWire(this.opts.publisher, wire, (w, { ack, error }) => {
      producing.end(error, w.positions);
      if (ack?.duplicate) duplicates += w.size;
      if (error !== undefined) failedDomains.add(domainOf(w.subject));
      if (++outcomes === wire.length) allOutcomes();
    });
    // Awaited in turn below, maybe after it settles: handled now, so a failed publish
    // is not an unhandled rejection (which would end the process).
    acks.catch(() => undefined);
    this.marking = this.marking.then(async () => {
      try {
        await acks;
        if (this.held.size === 0) this.publishFailures = 0;
        busMetrics.outboxPublished.inc({ schema: this.opts.schema }, rows.length - duplicates);
        if (duplicates > 0) busMetrics.outboxDuplicates.inc({ schema: this.opts.schema }, duplicates);
        for (const id of ids) {
          this.inFlight.delete(id);
          this.acked.add(id);
        }
        if (!this.markDue) {
          this.markDue = true;
          this.wake?.();
        }
      } catch (err) {
        // The rows stay in flight until the loop settles, then are read again; which domains
        // failed is known once every message of the batch has its answer.
        await everyOutcome;
        this.fail(new PublishFailed(err, failedDomains));
      }
    });
  }

  /** Refreshes the backlog gauge (at most once a second). */
  private async updateBacklog(client: PoolClient): Promise<void> {
    const now = Date.now();
    if (now - this.lastBacklogAt < 1000) return;
    this.lastBacklogAt = now;
    // Stand-by replicas report it too, so the gauge stays live if the leader is stuck.
    const r = await client.query<{ n: number }>(outboxBacklogSql(this.s), [backlogCountedUpTo]);
    // Rows published and waiting to be marked (markDelayMs) are not backlog.
    busMetrics.outboxBacklog.set({ schema: this.opts.schema }, Math.max(0, (r.rows[0]?.n ?? 0) - this.acked.size));
  }

  /**
   * Starts deleting the published rows past the retention, once a minute, beside the loop on
   * a connection of the pool: a chunk per statement (short locks, bounded WAL), chunk after
   * chunk until none is left, so that the table keeps up with any publish rate.
   */
  private cleanup(): void {
    const now = Date.now();
    if (this.opts.retentionMs === 0 || this.cleaning || now - this.lastCleanupAt < 60_000) return;
    this.lastCleanupAt = now;
    this.cleaning = this.deleteExpired()
      .catch((err: unknown) => void this.log.warn("outbox cleanup failed", { schema: this.opts.schema, error: errorMessage(err) }))
      .finally(() => (this.cleaning = undefined));
  }

  private async deleteExpired(): Promise<void> {
    let deleted: number;
    do {
      if (this.stopping) return;
      // By row address: published rows are in no index of id, so an id lookup would scan the table.
      const result = await this.opts.pool.query(
        prepared(
          `DELETE FROM ${this.s}.outbox WHERE ctid = ANY (ARRAY(
             SELECT ctid FROM ${this.s}.outbox WHERE published_at < now() - make_interval(secs => $1) LIMIT $2))`,
          [this.opts.retentionMs / 1000, this.opts.cleanupChunk],
        ),
      );
      deleted = result.rowCount ?? 0;
    } while (deleted >= this.opts.cleanupChunk);
  }

  /** Waits `ms`, cut short by a wake-up (new rows, acks, stop), or when `byStopOnly` by stop() alone. */
  private sleep(ms: number, byStopOnly = false): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.wake = null;
        resolve();
      }
      this.wake = byStopOnly
        ? () => {
            if (self.stopping) done();
          }
        : done;
    });
  }

}
