import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Order, OrderSchema, type OrderStatus, OrderStatus as Status } from "../../gen/orderflow/order/v1/order_pb.js";
import { type OutgoingMessage, outboxInsert, outboxWritten } from "../platform/bus/index.js";
import type { Database, Queryable } from "../platform/db.js";
import { money } from "../platform/money.js";
import { timestamp } from "../platform/time.js";
import type { PricedOrder } from "./domain/pricing.js";
import { statusFromName, statusName } from "./domain/status.js";

interface OrderRow {
  order_id: string;
  seq: string;
  customer_id: string;
  status: string;
  total_minor: string;
  currency: string;
  status_reason: string;
  version: string;
  request_hash: Buffer | null;
  created_at: Date;
  updated_at: Date;
}

export interface ItemRow {
  order_id: string;
  sku: string;
  quantity: string;
  unit_price_minor: string;
}

interface HistoryRow {
  from_status: string;
  to_status: string;
  reason: string;
  at: Date;
}

export interface NewOrder {
  customerId: string;
  priced: PricedOrder;
  idempotencyKey: string | undefined;
  requestHash: Buffer | undefined;
}

/** The saga's first step, started by the statement that creates the order. */
export interface SagaStart {
  /** Replies the order waits for, and how long it waits before re-sending. */
  awaiting: string[];
  stepTimeoutMs: number;
  /** The schema whose outbox carries the commands. */
  outboxSchema: string;
  /** The step's commands, written to the outbox with the order. */
  commands(order: Order): OutgoingMessage[];
}

export class IdempotencyConflict extends Error {}

const orderColumns = "order_id, seq, customer_id, status, total_minor, currency, status_reason, version, request_hash, created_at, updated_at";

function toOrder(row: OrderRow, items: ItemRow[], history: HistoryRow[] = []): Order {
  return create(OrderSchema, {
    orderId: row.order_id,
    customerId: row.customer_id,
    status: statusFromName(row.status),
    total: money(row.total_minor, row.currency),
    statusReason: row.status_reason,
    version: BigInt(row.version),
    createdAt: timestamp(row.created_at),
    updatedAt: timestamp(row.updated_at),
    items: items.map((i) => {
      const unit = BigInt(i.unit_price_minor);
      const quantity = BigInt(i.quantity);
      return { sku: i.sku, quantity, unitPrice: money(unit, row.currency), lineTotal: money(unit * quantity, row.currency) };
    }),
    history: history.map((h) => ({ fromStatus: statusFromName(h.from_status), toStatus: statusFromName(h.to_status), reason: h.reason, at: timestamp(h.at) })),
  });
}

/** An order's items as a JSON array of ItemRow, in line order (a column of a query on `orders`). */
export const itemsJson = `(SELECT coalesce(json_agg(json_build_object('order_id', i.order_id, 'sku', i.sku, 'quantity', i.quantity::text, 'unit_price_minor', i.unit_price_minor::text) ORDER BY i.line_no), '[]')
   FROM order_items i WHERE i.order_id = orders.order_id) AS items`;
const historyJson = `(SELECT coalesce(json_agg(json_build_object('from_status', h.from_status, 'to_status', h.to_status, 'reason', h.reason, 'at', h.at) ORDER BY h.id), '[]')
   FROM order_history h WHERE h.order_id = orders.order_id) AS history`;

/** Reads one order with its items and history (one round trip), or undefined. */
export async function readOrder(q: Queryable, orderId: string): Promise<Order | undefined> {
  const { rows } = await q.query<OrderRow & { items: ItemRow[]; history: Array<Omit<HistoryRow, "at"> & { at: string }> }>({
    name: "order.read",
    text: `SELECT ${orderColumns}, ${itemsJson}, ${historyJson} FROM orders WHERE order_id = $1`,
    values: [orderId],
  });
  const row = rows[0];
  if (!row) return undefined;
  return toOrder(row, row.items, row.history.map((h) => ({ ...h, at: new Date(h.at) })));
}

const insertOrderSql = `WITH o AS (
     INSERT INTO orders (order_id, customer_id, status, total_minor, currency, idempotency_key, request_hash, awaiting, step_deadline)
     VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7::text[], CASE WHEN cardinality($7::text[]) > 0 THEN now() + make_interval(secs => $8) END)
     RETURNING ${orderColumns}),
   i AS (
     INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_minor)
     SELECT $1, n, sku, qty, price FROM unnest($9::text[], $10::bigint[], $11::bigint[]) WITH ORDINALITY AS l(sku, qty, price, n)),
   h AS (
     INSERT INTO order_history (order_id, from_status, to_status, reason) VALUES ($1, 'UNSPECIFIED', 'PENDING', 'order placed') RETURNING at)`;

/**
 * One statement, and so one atomic write without BEGIN / COMMIT, inserts the order (with
 * its saga step), its items, its first history entry and the step's commands in the
 * outbox; the Order is built from what was written, without reading it back.
 */
async function insertOrder(q: Queryable, order: NewOrder, saga: SagaStart | undefined): Promise<Order> {
  const orderId = randomUUID();
  const lines = order.priced.lines;
  const currency = order.priced.currency;
  const values: unknown[] = [
    orderId,
    order.customerId,
    order.priced.totalMinor.toString(),
    currency,
    order.idempotencyKey ?? null,
    order.requestHash ?? null,
    saga?.awaiting ?? [],
    (saga?.stepTimeoutMs ?? 0) / 1000,
    lines.map((l) => l.sku),
    lines.map((l) => l.quantity.toString()),
    lines.map((l) => l.unitPriceMinor.toString()),
  ];
  let text = insertOrderSql;
  let name = "order.create";
  if (saga) {
    // The commands are built before the insert: they need only what the request decided.
    const placed = create(OrderSchema, { orderId, customerId: order.customerId, status: Status.PENDING, total: money(order.priced.totalMinor, currency) });
    const outbox = outboxInsert(saga.outboxSchema, saga.commands(placed), values.length + 1);
    values.push(...outbox.values);
    text += `, ob AS (${outbox.sql})`;
    name += "+outbox";
    if (outbox.notify !== undefined) {
      values.push(outbox.notify);
      text += `, n AS (SELECT pg_notify($${values.length}, ''))`;
      name += "+notify";
    }
  }
  const notified = name.endsWith("+notify") ? ", (SELECT count(*) FROM n) AS notified" : "";
  const { rows } = await q.query<OrderRow & { history_at: Date }>({ name, text: `${text} SELECT o.*, h.at AS history_at${notified} FROM o, h`, values });
  if (saga) outboxWritten(saga.outboxSchema);
  const row = rows[0]!;
  const items = lines.map((l) => ({ order_id: orderId, sku: l.sku, quantity: l.quantity.toString(), unit_price_minor: l.unitPriceMinor.toString() }));
  return toOrder(row, items, [{ from_status: "UNSPECIFIED", to_status: "PENDING", reason: "order placed", at: row.history_at }]);
}

export class OrderStore {
  constructor(readonly db: Database) {}

  /**
   * Inserts a PENDING order — with its items, first history entry and, in the
   * same statement, the saga's first step — or returns the order an earlier
   * request with the same idempotency key created. The unique (customer, key)
   * constraint decides: a new key (the common case) costs no lookup, a repeated
   * one fails the insert, which writes nothing, and the earlier order is read.
   */
  async create(order: NewOrder, saga?: SagaStart): Promise<{ order: Order; created: boolean }> {
    try {
      return { order: await insertOrder(this.db.primary, order, saga), created: true };
    } catch (error) {
      const repeatedKey = order.idempotencyKey && isUniqueViolation(error);
      if (!repeatedKey) throw error;
      const existing = await this.findByKey(this.db.primary, order.customerId, order.idempotencyKey!, order.requestHash);
      if (!existing) throw error;
      return { order: existing, created: false };
    }
  }

  private async findByKey(q: Queryable, customerId: string, key: string, hash: Buffer | undefined): Promise<Order | undefined> {
    const { rows } = await q.query<Pick<OrderRow, "order_id" | "request_hash">>("SELECT order_id, request_hash FROM orders WHERE customer_id = $1 AND idempotency_key = $2", [customerId, key]);
    const row = rows[0];
    if (!row) return undefined;
    if (hash && row.request_hash && !hash.equals(row.request_hash)) {
      throw new IdempotencyConflict(`idempotency key ${key} was already used for a different order (${row.order_id})`);
    }
    return readOrder(q, row.order_id);
  }

  /** GetOrder: the replica if it has the order, else the primary. */
  get(orderId: string): Promise<Order | undefined> {
    return this.db.readFresh((q) => readOrder(q, orderId));
  }

  /** A customer's orders, newest first, before position `beforeSeq`. */
  async list(customerId: string, statuses: OrderStatus[], limit: number, beforeSeq: string | undefined): Promise<Array<{ order: Order; seq: string }>> {
    const { rows } = await this.db.replica.query<OrderRow & { items: ItemRow[] }>(
      `SELECT ${orderColumns}, ${itemsJson} FROM orders
       WHERE customer_id = $1 AND ($2::text[] IS NULL OR status = ANY($2::text[])) AND ($3::bigint IS NULL OR seq < $3::bigint)
       ORDER BY seq DESC LIMIT $4`,
      [customerId, statuses.length > 0 ? statuses.map(statusName) : null, beforeSeq ?? null, limit],
    );
    return rows.map((row) => ({ order: toOrder(row, row.items), seq: row.seq }));
  }
}

function isUniqueViolation(error: unknown): boolean {
  return typeof error === "object" && error !== null && "code" in error && error.code === "23505";
}
