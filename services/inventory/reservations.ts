import { create } from "@bufbuild/protobuf";
import {
  type CommitStock,
  type ReleaseStock,
  type ReserveStock,
  StockCommittedSchema,
  StockReleasedSchema,
  StockReservationFailedSchema,
  StockReservedSchema,
} from "../../gen/orderflow/inventory/v1/saga_pb.js";
import type { Queryable } from "../platform/db.js";
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
const committed = (orderId: string): Reply => ({ subject: "inventory.evt.committed", message: create(StockCommittedSchema, { orderId }) });

async function lockReservation(tx: Queryable, orderId: string): Promise<{ status: ReservationStatus; reason: string } | undefined> {
  const { rows } = await tx.query<{ status: ReservationStatus; reason: string }>("SELECT status, reason FROM reservations WHERE order_id = $1 FOR UPDATE", [orderId]);
  return rows[0];
}

async function linesOf(tx: Queryable, orderId: string): Promise<Line[]> {
  const { rows } = await tx.query<{ sku: string; quantity: string }>("SELECT sku, quantity FROM reservation_lines WHERE order_id = $1 ORDER BY sku", [orderId]);
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
 * Reserves every line of the order or none. Replies with the recorded outcome
 * when the order was seen before (a re-sent command changes nothing).
 */
export async function reserveStock(tx: Queryable, command: ReserveStock): Promise<Reply> {
  const { orderId } = command;
  const existing = await lockReservation(tx, orderId);
  if (existing) {
    if (existing.status === "RESERVED" || existing.status === "COMMITTED") return reserved(orderId);
    return failed(orderId, existing.status === "RELEASED" ? "order cancelled" : existing.reason);
  }
  const lines = [...command.lines].sort((a, b) => a.sku.localeCompare(b.sku));
  await tx.query("SAVEPOINT reserve");
  const { rows } = await tx.query<{ sku: string }>(
    `UPDATE products p SET available = available - l.qty, reserved = reserved + l.qty, updated_at = now()
       FROM unnest($1::text[], $2::bigint[]) AS l(sku, qty)
      WHERE p.sku = l.sku AND p.available >= l.qty
      RETURNING p.sku`,
    [lines.map((l) => l.sku), lines.map((l) => l.quantity.toString())],
  );
  if (rows.length < lines.length) {
    await tx.query("ROLLBACK TO SAVEPOINT reserve");
    const got = new Set(rows.map((r) => r.sku));
    const unavailable = lines.filter((l) => !got.has(l.sku)).map((l) => l.sku);
    const reason = `out of stock: ${unavailable.join(", ")}`;
    await tx.query("INSERT INTO reservations (order_id, status, reason) VALUES ($1, 'FAILED', $2)", [orderId, reason]);
    return failed(orderId, reason, unavailable);
  }
  await tx.query("RELEASE SAVEPOINT reserve");
  await tx.query("INSERT INTO reservations (order_id, status) VALUES ($1, 'RESERVED')", [orderId]);
  await tx.query("INSERT INTO reservation_lines (order_id, sku, quantity) SELECT $1, * FROM unnest($2::text[], $3::bigint[])", [
    orderId,
    lines.map((l) => l.sku),
    lines.map((l) => l.quantity.toString()),
  ]);
  return reserved(orderId);
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
 * Turns the order's reservation into a sale. A reservation already released (the
 * order was cancelled and its release overtook this commit) has nothing to commit.
 */
export async function commitStock(tx: Queryable, { orderId }: CommitStock): Promise<Reply> {
  const existing = await lockReservation(tx, orderId);
  if (existing?.status === "RESERVED") {
    await moveStock(tx, await linesOf(tx, orderId), "reserved = reserved - l.qty, sold = sold + l.qty");
    await tx.query("UPDATE reservations SET status = 'COMMITTED', updated_at = now() WHERE order_id = $1", [orderId]);
  }
  return committed(orderId);
}
