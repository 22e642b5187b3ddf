import { foldOutbox, type OutgoingMessage, outboxWritten, type WrittenRow } from "../../platform/bus/index.js";
import { afterCommit, type PoolClient, prepared, type Statements } from "../../platform/db.js";
import { ordersChanged } from "./changes.js";
import { sagaRevision } from "./revision.js";

/** One change of a locked order's saga state, as `advance` decided it. */
export interface Transition {
  orderId: string;
  fromStatus: string;
  status: string;
  reason: string;
  awaiting: readonly string[];
  compensateTo: string | null;
  stockReserved: boolean;
  charged: boolean;
  statusChanged: boolean;
  startedStep: boolean;
  concluded: boolean;
}

/** What one order's transitions in a batch amount to: one row update. */
interface OrderUpdate {
  last: Transition;
  bump: number;
  started: boolean;
  concluded: boolean;
}

/**
 * The statement that writes a batch of transitions. Guarded, each order's update applies
 * only if the order is at the saga revision its transitions were decided on (`$16`, see
 * `sagaRevision`) once its row is locked; an order whose saga is elsewhere gets no update and
 * no history, and the statement returns the orders it updated. The revision compared is the
 * locked row's: a write that waited for another's lock sees what that one committed, not the
 * row as its statement began, so a write decided on the state an earlier write is making can
 * be sent while that one runs. The rows are locked in order of id first, so two writes
 * meeting the same orders cannot deadlock, whatever join the planner picks for the update
 * (a hash join over a small table locks in the table's physical order).
 */
function writeSql(guarded: boolean): string {
  return `WITH t AS (
   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bool[], $8::bool[], $14::bool[], $15::bool[]${guarded ? ", $16::text[]" : ""})
     AS t(order_id, status, reason, awaiting, compensate_to, bump, started, concluded, stock_reserved, charged${guarded ? ", revision" : ""})
 ), locked AS MATERIALIZED (
   SELECT order_id${guarded ? `, ${sagaRevision()} AS revision` : ""} FROM orders WHERE order_id IN (SELECT order_id FROM t) ORDER BY order_id FOR UPDATE
 ), updated AS (
   UPDATE orders o SET status = t.status, status_reason = t.reason, awaiting = string_to_array(t.awaiting, ','),
     compensate_to = t.compensate_to, stock_reserved = t.stock_reserved, charged = t.charged, version = o.version + t.bump, updated_at = now(),
     step_started_at = CASE WHEN t.started THEN now() ELSE o.step_started_at END,
     step_attempts = CASE WHEN t.started THEN 1 ELSE o.step_attempts END,
     step_deadline = CASE WHEN t.awaiting = '' THEN NULL WHEN t.started THEN now() + make_interval(secs => $9) ELSE o.step_deadline END,
     concluded_at = CASE WHEN t.concluded THEN now() ELSE o.concluded_at END
   FROM t JOIN locked USING (order_id) WHERE o.order_id = t.order_id${guarded ? " AND locked.revision = t.revision" : ""}
   RETURNING o.order_id${guarded ? `, ${sagaRevision("o")} AS revision` : ""}
 ), history AS (
   INSERT INTO order_history (order_id, from_status, to_status, reason)
   SELECT h.order_id, h.from_status, h.to_status, h.reason
     FROM unnest($10::uuid[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY AS h(order_id, from_status, to_status, reason, n)${guarded ? "\n    WHERE h.order_id IN (SELECT order_id FROM updated)" : ""}
    ORDER BY h.n
 )`;
}

/** The parameters `writeSql` takes ($1–$15), from a batch's transitions. */
function writeValues(transitions: readonly Transition[], stepTimeoutMs: number): unknown[] {
  const byOrder = new Map<string, OrderUpdate>();
  for (const t of transitions) {
    const seen = byOrder.get(t.orderId);
    byOrder.set(t.orderId, {
      last: t,
      bump: (seen?.bump ?? 0) + (t.statusChanged ? 1 : 0),
      started: (seen?.started ?? false) || t.startedStep,
      concluded: (seen?.concluded ?? false) || t.concluded,
    });
  }
  // In order of id, as the rows are locked (see `writeSql`).
  const updates = [...byOrder.values()].sort((a, b) => (a.last.orderId < b.last.orderId ? -1 : a.last.orderId > b.last.orderId ? 1 : 0));
  const changes = transitions.filter((t) => t.statusChanged);
  return [
    updates.map((u) => u.last.orderId),
    updates.map((u) => u.last.status),
    updates.map((u) => u.last.reason),
    updates.map((u) => u.last.awaiting.join(",")),
    updates.map((u) => u.last.compensateTo),
    updates.map((u) => u.bump),
    updates.map((u) => u.started),
    updates.map((u) => u.concluded),
    stepTimeoutMs / 1000,
    changes.map((t) => t.orderId),
    changes.map((t) => t.fromStatus),
    changes.map((t) => t.status),
    changes.map((t) => t.reason),
    updates.map((u) => u.last.stockReserved),
    updates.map((u) => u.last.charged),
  ];
}

/** The orders whose status the transitions change: their watchers are told once the write has committed. */
function changedOrders(transitions: readonly Transition[]): string[] {
  return [...new Set(transitions.filter((t) => t.statusChanged).map((t) => t.orderId))];
}

/**
 * Writes transitions of locked orders in one statement: each order's row gets its
 * last state (versions bumped once per status change, the step clock restarted if
 * any transition started a step), every status change gets its history entry in
 * order, and watchers of each changed order get one notice once `tx` commits.
 */
export async function writeTransitions(tx: PoolClient, transitions: readonly Transition[], stepTimeoutMs: number): Promise<void> {
  if (transitions.length === 0) return;
  await tx.query(prepared(`${writeSql(false)} SELECT (SELECT count(*) FROM updated) AS updated`, writeValues(transitions, stepTimeoutMs)));
  const changed = changedOrders(transitions);
  if (changed.length > 0) afterCommit(tx, () => ordersChanged(changed));
}

/** Orders' transitions, each decided on the order at its saga revision in `revisions`, with the messages they send. */
export interface GuardedWrite {
  /** The schema whose outbox takes the messages. */
  outboxSchema: string;
  revisions: ReadonlyMap<string, string>;
  transitions: readonly Transition[];
  /** Keyed by order id: an order's messages are written only with its update. */
  messages: readonly OutgoingMessage[];
}

/**
 * Writes transitions decided on orders read without a lock, as one statement (atomic
 * without BEGIN / COMMIT): like `writeTransitions`, plus the messages in the outbox, for
 * each order whose saga has not moved on since it was read. Returns the orders written, each
 * with the saga revision the write left; the others changed meanwhile and are to be decided
 * again on what they now are. Not for a client in a transaction: the watchers are told as
 * the statement returns.
 */
export async function writeTransitionsIfUnchanged(q: Statements, write: GuardedWrite, stepTimeoutMs: number): Promise<Map<string, string>> {
  if (write.transitions.length === 0) return new Map();
  const values = writeValues(write.transitions, stepTimeoutMs);
  values.push((values[0] as string[]).map((orderId) => write.revisions.get(orderId) ?? "0"));
  const outbox = write.messages.length > 0 ? foldOutbox(write.outboxSchema, write.messages, values, "SELECT order_id::text FROM updated") : undefined;
  const written = outbox ? "(SELECT json_agg(json_build_object('id', id::text, 'msg_id', msg_id)) FROM ob)" : "NULL::json";
  // One JSON object of order id → revision: JSON.parse reads a batch of 140 in a quarter of the time
  // node-postgres's array parser takes for two text arrays (a revision holds commas, so it comes quoted).
  const { rows } = await q.query<{ updated: Record<string, string> | null; written: WrittenRow[] | null }>(
    prepared(`${writeSql(true)}${outbox?.ctes ?? ""} SELECT (SELECT json_object_agg(order_id, revision) FROM updated) AS updated, ${written} AS written${outbox?.columns ?? ""}`, values),
  );
  if (outbox) outboxWritten(outbox.insert, rows[0]?.written ?? []);
  const updated = new Map(Object.entries(rows[0]?.updated ?? {}));
  ordersChanged(changedOrders(write.transitions).filter((orderId) => updated.has(orderId)));
  return updated;
}
