import { create } from "@bufbuild/protobuf";
import {
  type CommitStock,
  type ReleaseStock,
  type ReserveStock,
  StockReleasedSchema,
  StockReservationFailedSchema,
  StockReservedSchema,
} from "../../gen/orderflow/inventory/v1/saga_pb.js";
import { type OrderConcluded } from "../../gen/orderflow/order/v1/events_pb.js";
import { OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { prepared, type Queryable } from "../platform/db.js";
import { decidedOncePerOrder, type Reply } from "../platform/saga-participant.js";

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
 * Gives back what a batch's orders hold ($1 order ids), in one statement: a reservation
 * returns to available stock, a committed sale is restocked (cancel of a confirmed order),
 * and an order without a reservation gets a tombstone, so a late reserve is refused. The
 * reservations are locked in order-id order and then their products in sku order, as the
 * commit takes them, and the stock is moved from the locked rows (see `commitSql`). A
 * reservation another transaction inserted after this statement's snapshot makes its
 * tombstone violate the primary key: the batch fails and is retried message by message.
 */
const releaseSql = `WITH input AS (
   SELECT DISTINCT order_id FROM unnest($1::uuid[]) AS i(order_id)
 ), held AS (
   SELECT order_id, status FROM reservations WHERE order_id IN (SELECT order_id FROM input) ORDER BY order_id FOR UPDATE
 ), tombstones AS (
   INSERT INTO reservations (order_id, status, reason)
   SELECT order_id, 'RELEASED', 'released before reserve' FROM input WHERE order_id NOT IN (SELECT order_id FROM held)
 ), given AS (
   SELECT l.sku, coalesce(sum(l.quantity) FILTER (WHERE h.status = 'RESERVED'), 0) AS from_reserved,
          coalesce(sum(l.quantity) FILTER (WHERE h.status = 'COMMITTED'), 0) AS from_sold
     FROM held h JOIN reservation_lines l ON l.order_id = h.order_id WHERE h.status IN ('RESERVED', 'COMMITTED') GROUP BY l.sku
 ), locked AS (
   SELECT p.sku, p.available, p.reserved, p.sold FROM products p WHERE p.sku IN (SELECT sku FROM given) ORDER BY p.sku FOR UPDATE
 ), moved AS (
   UPDATE products p SET available = k.available + g.from_reserved + g.from_sold, reserved = k.reserved - g.from_reserved,
          sold = k.sold - g.from_sold, updated_at = now()
     FROM given g JOIN locked k ON k.sku = g.sku WHERE p.sku = g.sku
 )
 UPDATE reservations r SET status = 'RELEASED', updated_at = now() FROM held h WHERE r.order_id = h.order_id AND h.status <> 'RELEASED'`;

/**
 * inventory.cmd.release for the releases of a consumer batch: each order's reservation is
 * given back (or tombstoned) in one statement, and every command is answered StockReleased.
 */
export async function releaseAll(tx: Queryable, commands: ReleaseStock[]): Promise<Reply[]> {
  await tx.query(prepared(releaseSql, [commands.map((c) => c.orderId)]));
  return commands.map(({ orderId }) => released(orderId));
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
 * Commits the stock of a batch's orders in one statement. No reply: the order is CONFIRMED
 * already and waits for nothing. Commits commute with reservations of other orders (neither
 * reads what the other changes), so a batch may apply them in either order.
 */
async function commitOrders(tx: Queryable, orderIds: readonly string[]): Promise<void> {
  if (orderIds.length > 0) await tx.query(prepared(commitSql, [orderIds]));
}

/**
 * The orders confirmed (`order.evt.confirmed`) in a consumer batch: their stock is committed.
 * The confirmation is the commit's only trigger, so the orchestrator sends no command for it.
 */
export async function commitConfirmed(tx: Queryable, events: OrderConcluded[]): Promise<undefined[]> {
  await commitOrders(
    tx,
    events.filter((e) => e.status === OrderStatus.CONFIRMED).map((e) => e.orderId),
  );
  return events.map(() => undefined);
}

/**
 * CommitStock commands, which order services before the confirmation event took over sent
 * with each confirmation: those still in the stream during an upgrade are applied as before.
 */
export async function commitStock(tx: Queryable, commands: CommitStock[]): Promise<undefined[]> {
  await commitOrders(
    tx,
    commands.map((c) => c.orderId),
  );
  return commands.map(() => undefined);
}

/**
 * A batch's reservations ($1 orders, in batch order; $2-$4 their lines), in one statement
 * when the stock covers them all: the products are locked in sku order, the orders with a
 * reservation already are left out, and if the locked stock covers the rest's summed demand,
 * every one of them is reserved (no order can then fall short of what an earlier one left).
 * Otherwise it writes nothing and returns the locked products' stock, from which the orders
 * are decided one after another (`reserveBatchWriteSql`). Either way it returns the decision
 * and the orders that had a reservation. As in `reserveSql`, the stock is moved from the
 * locked rows, not from this statement's snapshot.
 */
const reserveBatchSql = `WITH input AS (
   SELECT order_id FROM unnest($1::uuid[]) AS i(order_id)
 ), l AS (
   SELECT * FROM unnest($2::uuid[], $3::text[], $4::bigint[]) AS l(order_id, sku, qty)
 ), locked AS (
   SELECT sku, available FROM products WHERE sku IN (SELECT sku FROM l) ORDER BY sku FOR UPDATE
 ), recorded AS (
   SELECT order_id FROM reservations WHERE order_id IN (SELECT order_id FROM input)
 ), demand AS (
   SELECT sku, sum(qty) AS qty FROM l WHERE order_id NOT IN (SELECT order_id FROM recorded) GROUP BY sku
 ), decision AS (
   SELECT NOT EXISTS (SELECT 1 FROM demand d LEFT JOIN locked k ON k.sku = d.sku WHERE k.available IS NULL OR k.available < d.qty) AS ok
 ), moved AS (
   UPDATE products p SET available = k.available - d.qty, reserved = p.reserved + d.qty, updated_at = now()
     FROM demand d JOIN locked k ON k.sku = d.sku, decision WHERE decision.ok AND p.sku = d.sku
 ), reservation AS (
   INSERT INTO reservations (order_id, status, reason)
   SELECT order_id, 'RESERVED', '' FROM input, decision WHERE decision.ok AND order_id NOT IN (SELECT order_id FROM recorded)
 ), lines AS (
   INSERT INTO reservation_lines (order_id, sku, quantity)
   SELECT order_id, sku, qty FROM l, decision WHERE decision.ok AND order_id NOT IN (SELECT order_id FROM recorded)
 )
 SELECT 'decision' AS kind, NULL AS id, NULL AS available, ok FROM decision
 UNION ALL
 SELECT 'product', k.sku, k.available::text, NULL FROM locked k, decision WHERE NOT decision.ok
 UNION ALL
 SELECT 'reservation', order_id::text, NULL, NULL FROM recorded`;

/**
 * Writes a batch's decisions: the stock each product gives up, the reservations and their
 * lines. A reservation that appeared since the products were locked (a release's tombstone
 * of an order whose skus this batch did not lock) violates the primary key and fails the
 * batch, which the consumer then applies message by message.
 */
const reserveBatchWriteSql = `WITH moved AS (
   UPDATE products p SET available = p.available - m.qty, reserved = p.reserved + m.qty, updated_at = now()
     FROM unnest($1::text[], $2::bigint[]) AS m(sku, qty) WHERE p.sku = m.sku
 ), reservation AS (
   INSERT INTO reservations (order_id, status, reason) SELECT * FROM unnest($3::uuid[], $4::text[], $5::text[])
 )
 INSERT INTO reservation_lines (order_id, sku, quantity) SELECT * FROM unnest($6::uuid[], $7::text[], $8::bigint[])`;

/**
 * inventory.cmd.reserve for the reservations of a consumer batch, with the outcomes
 * `reserveStock` would give them one after another. When the stock covers every order,
 * one statement reserves them all (`reserveBatchSql`); otherwise that statement returns
 * the locked stock, the decisions are taken here in order (all lines of an order or none;
 * an earlier order lowers the stock a later one sees), and one statement writes them. An
 * order with a reservation already (a re-sent or redelivered command, a release's
 * tombstone), or met twice in the batch, goes through `reserveStock` after the others,
 * which returns its recorded outcome. A batch of one is `reserveStock`.
 */
export async function reserveAll(tx: Queryable, commands: ReserveStock[]): Promise<Reply[]> {
  if (commands.length === 1) return [await reserveStock(tx, commands[0]!)];
  return decidedOncePerOrder(
    commands,
    (firsts) => reserveFresh(tx, firsts),
    (command) => reserveStock(tx, command),
  );
}

/** Reserves for the first command of each order of a batch (`reserveBatchSql`, then one after another if it did not reserve them all); leaves out orders with a reservation already. */
async function reserveFresh(tx: Queryable, firsts: ReserveStock[]): Promise<Map<string, Reply>> {
  const lines = firsts.flatMap(({ orderId, lines }) => lines.map((l) => ({ orderId, sku: l.sku, quantity: l.quantity })));
  const { rows } = await tx.query<{ kind: "decision" | "product" | "reservation"; id: string | null; available: string | null; ok: boolean | null }>(
    prepared(reserveBatchSql, [firsts.map((c) => c.orderId), lines.map((l) => l.orderId), lines.map((l) => l.sku), lines.map((l) => l.quantity.toString())]),
  );
  const recorded = new Set(rows.filter((r) => r.kind === "reservation").map((r) => r.id!));
  // Postgres writes a uuid in lower case; the command's id may be spelled otherwise.
  const fresh = firsts.filter((c) => !recorded.has(c.orderId.toLowerCase()));
  if (rows.find((r) => r.kind === "decision")!.ok) return new Map(fresh.map(({ orderId }) => [orderId, reserved(orderId)]));
  return decideOneAfterAnother(tx, fresh, new Map(rows.filter((r) => r.kind === "product").map((r) => [r.id!, BigInt(r.available ?? "0")])));
}

/** Decides fresh orders in batch order on the locked stock (`available`, changed as it goes), and writes the decisions in one statement. */
async function decideOneAfterAnother(tx: Queryable, orders: ReserveStock[], available: Map<string, bigint>): Promise<Map<string, Reply>> {
  const moved = new Map<string, bigint>();
  const reservations: Array<{ orderId: string; status: ReservationStatus; reason: string }> = [];
  const lines: Array<{ orderId: string } & Line> = [];
  const decided = new Map<string, Reply>();
  for (const { orderId, lines: ordered } of orders) {
    const sorted = [...ordered].sort((a, b) => a.sku.localeCompare(b.sku));
    const short = sorted.filter((l) => (available.get(l.sku) ?? -1n) < l.quantity).map((l) => l.sku);
    if (short.length > 0) {
      const reason = `out of stock: ${short.join(", ")}`;
      reservations.push({ orderId, status: "FAILED", reason });
      decided.set(orderId, failed(orderId, reason, short));
      continue;
    }
    for (const l of sorted) {
      available.set(l.sku, available.get(l.sku)! - l.quantity);
      moved.set(l.sku, (moved.get(l.sku) ?? 0n) + l.quantity);
      lines.push({ orderId, sku: l.sku, quantity: l.quantity });
    }
    reservations.push({ orderId, status: "RESERVED", reason: "" });
    decided.set(orderId, reserved(orderId));
  }
  if (reservations.length > 0) {
    await tx.query(
      prepared(reserveBatchWriteSql, [
        [...moved.keys()],
        [...moved.values()].map(String),
        reservations.map((r) => r.orderId),
        reservations.map((r) => r.status),
        reservations.map((r) => r.reason),
        lines.map((l) => l.orderId),
        lines.map((l) => l.sku),
        lines.map((l) => l.quantity.toString()),
      ]),
    );
  }
  return decided;
}
