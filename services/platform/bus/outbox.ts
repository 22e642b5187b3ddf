import { randomUUID } from "node:crypto";
import type { Registry } from "@bufbuild/protobuf";
import type { ClientBase } from "pg";
import { afterCommit, prepared } from "../db.js";
import { encodeMessage, sagaRegistry } from "./codec.js";
import { outboxChannel, quoteSchema } from "./names.js";
import type { OutgoingMessage } from "./publish.js";
import { currentTraceHeaders } from "./trace.js";

export interface EnqueueOptions {
  registry?: Registry;
  /**
   * Wake the relay with `NOTIFY <schema>_outbox` (delivered at commit):
   * - `"auto"` (default): none while the relay leading the schema runs in this process (it is
   *   handed the rows); else at most one NOTIFY per schema per 20 ms from this process. NOTIFY
   *   serialises committing transactions (measured here: 16 writers, 1-row transactions,
   *   ~1,650 tx/s without, ~770 tx/s with a NOTIFY in each); under load the relay is
   *   polling every 20 ms anyway (see OutboxRelay), so skipping most NOTIFYs costs nothing.
   * - `true`: always; `false`: never (the relay's polling picks the rows up).
   */
  notify?: boolean | "auto";
}

const NOTIFY_INTERVAL_MS = 20;
const lastNotify = new Map<string, number>();

/** An outbox row as written: what the relay publishes. */
export interface OutboxRecord {
  /** The row's `id` (bigint as text): its place in publish order. */
  id: string;
  msgId: string;
  subject: string;
  type: string;
  payload: Buffer;
  headers: Record<string, string>;
  key: string | null;
}

/** `id` and `msg_id` of the rows an outbox insert wrote (its RETURNING). */
export interface WrittenRow {
  id: string;
  msg_id: string;
}

/** The relay leading a schema's outbox from this process. */
export interface LocalRelay {
  /** Rows of this process that have committed: publish them without reading them back. */
  publishCommitted(rows: readonly OutboxRecord[]): void;
}

const localLeaders = new Map<string, LocalRelay>();

/**
 * Registers this process's leading relay of `schema`: a write of this process to that
 * outbox hands it the committed rows (an `afterCommit` callback, or `outboxWritten`), so it
 * publishes them at once, without a NOTIFY, a poll or a read. Returns the unregistration.
 */
export function registerLocalRelay(schema: string, relay: LocalRelay): () => void {
  localLeaders.set(schema, relay);
  return () => {
    if (localLeaders.get(schema) === relay) localLeaders.delete(schema);
  };
}

function shouldNotify(schema: string, mode: boolean | "auto"): boolean {
  if (mode !== "auto") return mode;
  // The relay leading from this process is handed the rows (afterCommit / outboxWritten).
  if (localLeaders.has(schema)) return false;
  const now = Date.now();
  if (now - (lastNotify.get(schema) ?? 0) < NOTIFY_INTERVAL_MS) return false;
  lastNotify.set(schema, now);
  return true;
}

export interface OutboxInsert {
  schema: string;
  /** The INSERT, `RETURNING id, msg_id, key` (the rows' `WrittenRow`s and their keys). */
  sql: string;
  values: unknown[];
  /** The messages' ids, in order. */
  ids: string[];
  /** The channel to pg_notify when this write should signal the relay, else undefined. */
  notify: string | undefined;
  /** The records of the rows the statement returned as written. */
  records(written: readonly WrittenRow[]): OutboxRecord[];
}

/**
 * The outbox insert of `messages` as a data-modifying CTE body with parameters numbered from
 * `first`, to fold into a statement of the caller's (see `enqueueOutbox` for the usual way):
 * a single statement runs without BEGIN / COMMIT, so it saves two round trips. `notify` is
 * the channel to pg_notify when this write should signal the relay (throttled, see
 * EnqueueOptions.notify), else undefined. Once the statement committed, call
 * `outboxWritten(insert, rows)` with the rows its RETURNING gave.
 * With `keysIn` (a subquery of the statement), only messages whose key it returns are written.
 * The active trace context is stored with each row.
 */
export function outboxInsert(
  schema: string,
  messages: readonly OutgoingMessage[],
  first: number,
  opts: EnqueueOptions = {},
  keysIn?: string,
): OutboxInsert {
  const trace = currentTraceHeaders();
  const rows: Omit<OutboxRecord, "id">[] = messages.map((m) => {
    const { type, payload } = encodeMessage(m.message, opts.registry ?? sagaRegistry);
    return {
      msgId: m.id ?? randomUUID(),
      subject: m.subject,
      type,
      payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
      // A message's own trace headers (captured where it was decided) win over the context's.
      headers: { ...trace, ...m.headers },
      key: m.key ?? null,
    };
  });
  const $ = (i: number): string => `$${first + i}`;
  const sql = `INSERT INTO ${quoteSchema(schema)}.outbox (msg_id, subject, type, payload, headers, key)
    SELECT u.msg_id, u.subject, u.type, u.payload, u.headers, u.key
      FROM unnest(${$(0)}::text[], ${$(1)}::text[], ${$(2)}::text[], ${$(3)}::bytea[], ${$(4)}::jsonb[], ${$(5)}::text[])
           WITH ORDINALITY AS u(msg_id, subject, type, payload, headers, key, ord)${keysIn === undefined ? "" : `
     WHERE u.key IN (${keysIn})`}
     ORDER BY u.ord
    RETURNING id, msg_id, key`;
  const ids = rows.map((r) => r.msgId);
  const byMsgId = new Map(rows.map((r) => [r.msgId, r]));
  return {
    schema,
    sql,
    values: [ids, rows.map((r) => r.subject), rows.map((r) => r.type), rows.map((r) => r.payload), rows.map((r) => JSON.stringify(r.headers)), rows.map((r) => r.key)],
    ids,
    notify: shouldNotify(schema, opts.notify ?? "auto") ? outboxChannel(schema) : undefined,
    records: (written) =>
      written.flatMap((w) => {
        const row = byMsgId.get(w.msg_id);
        return row ? [{ ...row, id: w.id }] : [];
      }),
  };
}

/** An outbox insert folded into a statement of the caller's (see `foldOutbox`). */
export interface FoldedOutbox {
  insert: OutboxInsert;
  /** To append to the statement's WITH list: `ob` (the rows written, `RETURNING id, msg_id, key`) and the relay's NOTIFY, if due. */
  ctes: string;
  /** To append to the final select list, so that Postgres runs the NOTIFY. */
  columns: string;
}

/**
 * Folds the outbox insert of `messages` into a statement of the caller's, whose parameters so
 * far are `values` (its own are appended): only messages whose key `keysIn` returns are written.
 * Once the statement has run, call `outboxWritten(folded.insert, rows)` with the rows of `ob`.
 */
export function foldOutbox(schema: string, messages: readonly OutgoingMessage[], values: unknown[], keysIn: string): FoldedOutbox {
  const insert = outboxInsert(schema, messages, values.length + 1, {}, keysIn);
  values.push(...insert.values);
  if (insert.notify === undefined) return { insert, ctes: `, ob AS (${insert.sql})`, columns: "" };
  values.push(insert.notify);
  return {
    insert,
    ctes: `, ob AS (${insert.sql}), relay_notice AS (SELECT pg_notify($${values.length}, ''))`,
    columns: ", (SELECT count(*) FROM relay_notice) AS relay_notified",
  };
}

/**
 * After `insert` committed (a statement of its own, or the transaction holding it), with the
 * rows its `RETURNING id, msg_id` gave: hands them to this process's relay of the schema, if
 * it leads.
 */
export function outboxWritten(insert: OutboxInsert, written: readonly WrittenRow[]): void {
  if (written.length > 0) localLeaders.get(insert.schema)?.publishCommitted(insert.records(written));
}

/**
 * Adds messages to `<schema>.outbox` inside the caller's open transaction (one multi-row
 * INSERT, rows in the given order) and signals the relay: when it leads from this process
 * it is handed the rows once the transaction commits (`afterCommit` callbacks, run by
 * `Database.transaction` and the bus consumer); otherwise with NOTIFY (delivered at
 * commit; throttled by default, see EnqueueOptions.notify).
 * The active trace context is stored with each row. Returns the message ids, in order.
 */
export async function enqueueOutbox(client: ClientBase, schema: string, messages: readonly OutgoingMessage[], opts: EnqueueOptions = {}): Promise<string[]> {
  if (messages.length === 0) return [];
  const insert = outboxInsert(schema, messages, 1, opts);
  // One round trip either way: Postgres folds repeated notifies of a transaction into one.
  const text = insert.notify === undefined ? insert.sql : `WITH ins AS (${insert.sql}), n AS (SELECT pg_notify($7, '') FROM (SELECT 1 FROM ins LIMIT 1) x) SELECT id, msg_id, (SELECT count(*) FROM n) AS notified FROM ins`;
  const { rows } = await client.query<WrittenRow>(prepared(text, insert.notify === undefined ? insert.values : [...insert.values, insert.notify]));
  // The leader is looked up at commit: one that took over since the insert gets the rows too.
  afterCommit(client, () => outboxWritten(insert, rows));
  return insert.ids;
}
