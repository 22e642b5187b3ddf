import { create } from "@bufbuild/protobuf";
import {
  type CommitStock,
  type ReleaseStock,
  type ReserveStock,
  StockReleasedSchema,
  StockReservationFailedSchema,
  StockReservedSchema,
} from "../../gen/orderflow/inventory/v1/saga_pb.js";
import { prepared, type Queryable } from "../platform/db.js";
import type { Reply } from "../platform/saga-participant.js";

type ReservationStatus = "RESERVED" | "COMMITTED" | "RELEASED" | "FAILED";

interface Line {
  sku: string;
  quantity: bigint;
}

const reserved = (orderId: string): Reply => ({ subject: "inventory.evt.reserved", message: create(StockReservedSchema, { orderId }) });
const failed = (orderId: string, reason: string, unavailableSkus: string[] = []): Reply => ({
  subject: "inventory.evt.reservation_failed",
  message: create(StockReservationFailedSchema, { orderId, reason, unavailableSkus }),
});
const released = (orderId: string): Reply => ({ subject: "inventory.evt.released", message: create(StockReleasedSchema, { orderId }) });

async function lockReservation(tx: Queryable, orderId: string): Promise<{ status: ReservationStatus; reason: string } | undefined> {
  const { rows } = await tx.query<{ status: ReservationStatus; reason: string }>(prepared("SELECT status, reason FROM reservations WHERE order_id = $1 FOR UPDATE", [orderId]));
  return rows[0];
}

async function linesOf(tx: Queryable, orderId: string): Promise<Line[]> {
  const { rows } = await tx.query<{ sku: string; quantity: string }>(prepared("SELECT sku, quantity FROM reservation_lines WHERE order_id = $1 ORDER BY sku", [orderId]));
  return rows.map((r) => ({ sku: r.sku, quantity: BigInt(r.quantity) }));
}

/** Moves quantities between the stock columns of each line's product. */
async function moveStock(tx: Queryable, lines: Line[], change: string): Promise<void> {
  await tx.query(`UPDATE products p SET ${change}, updated_at = now() FROM unnest($1::text[], $2::bigint[]) AS l(sku, qty) WHERE p.sku = l.sku`, [
    lines.map((l) => l.sku),
    lines.map((l) => l.quantity.toString()),
  ]);
}

/**
 * Reserves every line of the order ($2 skus, $3 quantities, in line order) or none,
 * and records the outcome ($1 order) — unless the order has a reservation already
 * (locked, and returned as `existing_*`: a re-sent command or a release's tombstone),
 * in which case it changes nothing. The products are locked in sku order (no deadlock
 * between batches), the decision is taken on the locked rows, and `available` is set
 * from them rather than from this statement's snapshot, whose older value a concurrent
 * commit may have lowered (Postgres checks the CHECK on the snapshot's tuple first).
 */
const reserveSql = `WITH existing AS (
   SELECT status, reason FROM reservations WHERE order_id = $1 FOR UPDATE
 ), l AS (
   SELECT * FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS l(sku, qty, n)
 ), locked AS (
   SELECT p.sku, p.available FROM products p
    WHERE p.sku IN (SELECT sku FROM l) AND NOT EXISTS (SELECT 1 FROM existing) ORDER BY p.sku FOR UPDATE
 ), short AS (
   SELECT l.sku, l.n FROM l LEFT JOIN locked k ON k.sku = l.sku WHERE k.available IS NULL OR k.available < l.qty
 ), decision AS (
   SELECT NOT EXISTS (SELECT 1 FROM existing) AS fresh, NOT EXISTS (SELECT 1 FROM existing) AND NOT EXISTS (SELECT 1 FROM short) AS ok,
          (SELECT string_agg(sku, ', ' ORDER BY n) FROM short) AS unavailable
 ), moved AS (
   UPDATE products p SET available = k.available - l.qty, reserved = p.reserved + l.qty, updated_at = now()
     FROM l JOIN locked k ON k.sku = l.sku, decision d WHERE d.ok AND p.sku = l.sku
 ), reservation AS (
   INSERT INTO reservations (order_id, status, reason)
   SELECT $1, CASE WHEN d.ok THEN 'RESERVED' ELSE 'FAILED' END, CASE WHEN d.ok THEN '' ELSE 'out of stock: ' || d.unavailable END FROM decision d WHERE d.fresh
 ), lines AS (
   INSERT INTO reservation_lines (order_id, sku, quantity) SELECT $1, l.sku, l.qty FROM l, decision d WHERE d.ok
 )
 SELECT d.ok, coalesce(d.unavailable, '') AS unavailable, ARRAY(SELECT sku FROM short ORDER BY n) AS skus,
        (SELECT status FROM existing) AS existing_status, (SELECT reason FROM existing) AS existing_reason
   FROM decision d`;

/**
 * Reserves every line of the order or none, in one statement. Replies with the
 * recorded outcome when the order was seen before (a re-sent command changes nothing).
 */
export async function reserveStock(tx: Queryable, command: ReserveStock): Promise<Reply> {
  const { orderId } = command;
  const lines = [...command.lines].sort((a, b) => a.sku.localeCompare(b.sku));
  const { rows } = await tx.query<{ ok: boolean; unavailable: string; skus: string[]; existing_status: ReservationStatus | null; existing_reason: string | null }>(
    prepared(reserveSql, [orderId, lines.map((l) => l.sku), lines.map((l) => l.quantity.toString())]),
  );
  const outcome = rows[0]!;
  if (outcome.existing_status === "RESERVED" || outcome.existing_status === "COMMITTED") return reserved(orderId);
  if (outcome.existing_status) return failed(orderId, outcome.existing_status === "RELEASED" ? "order cancelled" : (outcome.existing_reason ?? ""));
  if (outcome.ok) return reserved(orderId);
  return failed(orderId, `out of stock: ${outcome.unavailable}`, outcome.skus);
}

/**
 * Gives back what the order holds: a reservation returns to available stock, a
 * committed sale is restocked (cancel of a confirmed order). Without a
 * reservation it leaves a tombstone so a late reserve is refused.
 */
export async function releaseStock(tx: Queryable, { orderId }: ReleaseStock): Promise<Reply> {
  const existing = await lockReservation(tx, orderId);
  if (!existing) {
    await tx.query("INSERT INTO reservations (order_id, status, reason) VALUES ($1, 'RELEASED', 'released before reserve')", [orderId]);
    return released(orderId);
  }
  if (existing.status === "RESERVED") await moveStock(tx, await linesOf(tx, orderId), "available = available + l.qty, reserved = reserved - l.qty");
  if (existing.status === "COMMITTED") await moveStock(tx, await linesOf(tx, orderId), "available = available + l.qty, sold = sold - l.qty");
  if (existing.status !== "RELEASED") await tx.query("UPDATE reservations SET status = 'RELEASED', updated_at = now() WHERE order_id = $1", [orderId]);
  return released(orderId);
}

/**
 * Turns reservations into sales: the reservations still RESERVED become COMMITTED and their
 * quantities move from reserved to sold, summed per product. The products are locked in
 * sku order and the new values computed from the locked rows (as in reserveSql). A
 * reservation already released (the order was cancelled and its release overtook the
 * commit) has nothing to commit.
 */
const commitSql = `WITH r AS (
   UPDATE reservations SET status = 'COMMITTED', updated_at = now() WHERE order_id = ANY($1::uuid[]) AND status = 'RESERVED' RETURNING order_id
 ), m AS (
   SELECT l.sku, sum(l.quantity) AS qty FROM reservation_lines l JOIN r ON r.order_id = l.order_id GROUP BY l.sku
 ), locked AS (
   SELECT p.sku, p.reserved, p.sold FROM products p WHERE p.sku IN (SELECT sku FROM m) ORDER BY p.sku FOR UPDATE
 )
 UPDATE products p SET reserved = k.reserved - m.qty, sold = k.sold + m.qty, updated_at = now()
   FROM m JOIN locked k ON k.sku = m.sku WHERE p.sku = m.sku`;

/**
 * The CommitStock commands of a consumer batch, written by one statement: at the end of
 * the batch, or before any other command of it runs, so every command still sees the
 * effects of those before it.
 */
export class StockCommits {
  private readonly orderIds: string[] = [];

  clear(): void {
    this.orderIds.length = 0;
  }

  /** Collects the commit. It has no reply: the order is CONFIRMED already and waits for nothing. */
  async commit(_tx: Queryable, { orderId }: CommitStock): Promise<undefined> {
    this.orderIds.push(orderId);
    return undefined;
  }

  /** `handle`, after the commits collected so far are written. */
  writtenBefore<C, R>(handle: (tx: Queryable, command: C) => Promise<R>): (tx: Queryable, command: C) => Promise<R> {
    return async (tx, command) => {
      await this.write(tx);
      return handle(tx, command);
    };
  }

  async write(tx: Queryable): Promise<void> {
    if (this.orderIds.length === 0) return;
    await tx.query(prepared(commitSql, [this.orderIds.splice(0)]));
  }
}
