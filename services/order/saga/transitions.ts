import { prepared, type Queryable } from "../../platform/db.js";

/** One change of a locked order's saga state, as `advance` decided it. */
export interface Transition {
  orderId: string;
  fromStatus: string;
  status: string;
  reason: string;
  awaiting: readonly string[];
  compensateTo: string | null;
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

const writeSql = `WITH t AS (
   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bool[], $8::bool[])
     AS t(order_id, status, reason, awaiting, compensate_to, bump, started, concluded)
 ), updated AS (
   UPDATE orders o SET status = t.status, status_reason = t.reason, awaiting = string_to_array(t.awaiting, ','),
     compensate_to = t.compensate_to, version = o.version + t.bump, updated_at = now(),
     step_started_at = CASE WHEN t.started THEN now() ELSE o.step_started_at END,
     step_attempts = CASE WHEN t.started THEN 1 ELSE o.step_attempts END,
     step_deadline = CASE WHEN t.awaiting = '' THEN NULL WHEN t.started THEN now() + make_interval(secs => $9) ELSE o.step_deadline END,
     concluded_at = CASE WHEN t.concluded THEN now() ELSE o.concluded_at END
   FROM t WHERE o.order_id = t.order_id
   RETURNING o.order_id
 ), history AS (
   INSERT INTO order_history (order_id, from_status, to_status, reason)
   SELECT h.order_id, h.from_status, h.to_status, h.reason
     FROM unnest($10::uuid[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY AS h(order_id, from_status, to_status, reason, n)
    ORDER BY h.n
 ), notice AS (
   SELECT pg_notify('order_changed', n.order_id::text) FROM unnest($14::uuid[]) AS n(order_id)
 )
 SELECT (SELECT count(*) FROM updated) AS updated, (SELECT count(*) FROM notice) AS notified`;

/**
 * Writes transitions of locked orders in one statement: each order's row gets its
 * last state (versions bumped once per status change, the step clock restarted if
 * any transition started a step), every status change gets its history entry in
 * order, and watchers of each changed order get one notice.
 */
export async function writeTransitions(tx: Queryable, transitions: readonly Transition[], stepTimeoutMs: number): Promise<void> {
  if (transitions.length === 0) return;
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
  const updates = [...byOrder.values()];
  const changes = transitions.filter((t) => t.statusChanged);
  await tx.query(
    prepared(writeSql, [
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
      [...new Set(changes.map((t) => t.orderId))],
    ]),
  );
}
