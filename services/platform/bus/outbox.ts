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
   *   woken directly); else at most one NOTIFY per schema per 20 ms from this process. NOTIFY
   *   serialises committing transactions (measured here: 16 writers, 1-row transactions,
   *   ~1,650 tx/s without, ~770 tx/s with a NOTIFY in each); under load the relay is
   *   polling every 20 ms anyway (see OutboxRelay), so skipping most NOTIFYs costs nothing.
   * - `true`: always; `false`: never (the relay's polling picks the rows up).
   */
  notify?: boolean | "auto";
}

const NOTIFY_INTERVAL_MS = 20;
const lastNotify = new Map<string, number>();

/** The relay leading each schema's outbox from this process, woken directly after a local commit. */
const localLeaders = new Map<string, () => void>();

/**
 * Registers this process's leading relay of `schema`: a transaction of this process that
 * enqueues to it wakes it as soon as it has committed (an `afterCommit` callback), without
 * waiting for a throttled NOTIFY or the relay's next poll. Returns the unregistration.
 */
export function registerLocalRelay(schema: string, wake: () => void): () => void {
  localLeaders.set(schema, wake);
  return () => {
    if (localLeaders.get(schema) === wake) localLeaders.delete(schema);
  };
}

function shouldNotify(schema: string, mode: boolean | "auto"): boolean {
  if (mode !== "auto") return mode;
  // The relay leading from this process is woken directly (afterCommit / outboxWritten).
  if (localLeaders.has(schema)) return false;
  const now = Date.now();
  if (now - (lastNotify.get(schema) ?? 0) < NOTIFY_INTERVAL_MS) return false;
  lastNotify.set(schema, now);
  return true;
}

/**
 * The outbox insert of `messages` as a data-modifying CTE body with parameters numbered from
 * `first`, to fold into a statement of the caller's (see `enqueueOutbox` for the usual way):
 * a single statement runs without BEGIN / COMMIT, so it saves two round trips. `notify` is
 * the channel to pg_notify when this write should signal the relay (throttled, see
 * EnqueueOptions.notify), else undefined. Call `outboxWritten(schema)` once it committed.
 * With `keysIn` (a subquery of the statement), only messages whose key it returns are written.
 * The active trace context is stored with each row.
 */
export function outboxInsert(
  schema: string,
  messages: readonly OutgoingMessage[],
  first: number,
  opts: EnqueueOptions = {},
  keysIn?: string,
): { sql: string; values: unknown[]; ids: string[]; notify: string | undefined } {
  const trace = currentTraceHeaders();
  const ids: string[] = [];
  const subjects: string[] = [];
  const types: string[] = [];
  const payloads: Buffer[] = [];
  const headers: string[] = [];
  const keys: (string | null)[] = [];
  for (const m of messages) {
    const { type, payload } = encodeMessage(m.message, opts.registry ?? sagaRegistry);
    ids.push(m.id ?? randomUUID());
    subjects.push(m.subject);
    types.push(type);
    payloads.push(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
    // A message's own trace headers (captured where it was decided) win over the context's.
    headers.push(JSON.stringify({ ...trace, ...m.headers }));
    keys.push(m.key ?? null);
  }
  const $ = (i: number): string => `$${first + i}`;
  const sql = `INSERT INTO ${quoteSchema(schema)}.outbox (msg_id, subject, type, payload, headers, key)
    SELECT u.msg_id, u.subject, u.type, u.payload, u.headers, u.key
      FROM unnest(${$(0)}::text[], ${$(1)}::text[], ${$(2)}::text[], ${$(3)}::bytea[], ${$(4)}::jsonb[], ${$(5)}::text[])
           WITH ORDINALITY AS u(msg_id, subject, type, payload, headers, key, ord)${keysIn === undefined ? "" : `
     WHERE u.key IN (${keysIn})`}
     ORDER BY u.ord`;
  return { sql, values: [ids, subjects, types, payloads, headers, keys], ids, notify: shouldNotify(schema, opts.notify ?? "auto") ? outboxChannel(schema) : undefined };
}

/** After a statement that wrote `schema`'s outbox outside a transaction committed: wakes this process's relay of it. */
export function outboxWritten(schema: string): void {
  localLeaders.get(schema)?.();
}

/**
 * Adds messages to `<schema>.outbox` inside the caller's open transaction (one multi-row
 * INSERT, rows in the given order) and signals the relay: directly when it leads from this
 * process and the transaction runs `afterCommit` callbacks, and with NOTIFY
 * (delivered at commit; throttled by default, see EnqueueOptions.notify).
 * The active trace context is stored with each row. Returns the message ids, in order.
 */
export async function enqueueOutbox(client: ClientBase, schema: string, messages: readonly OutgoingMessage[], opts: EnqueueOptions = {}): Promise<string[]> {
  if (messages.length === 0) return [];
  const insert = outboxInsert(schema, messages, 1, opts);
  const localLeader = localLeaders.get(schema);
  if (localLeader) afterCommit(client, localLeader);
  if (insert.notify === undefined) {
    await client.query(prepared(insert.sql, insert.values));
  } else {
    // One round trip: the insert and the notify (Postgres folds repeated notifies of a transaction into one).
    await client.query(prepared(`WITH ins AS (${insert.sql} RETURNING 1) SELECT pg_notify($7, '') FROM (SELECT 1 FROM ins LIMIT 1) x`, [...insert.values, insert.notify]));
  }
  return insert.ids;
}
