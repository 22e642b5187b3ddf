import { create } from "@bufbuild/protobuf";
import { type Order, OrderSchema, OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { currentTraceHeaders, foldOutbox, type OutgoingMessage, outboxWritten, type WrittenRow } from "../platform/bus/index.js";
import { batchPerTurn } from "../platform/batch-per-turn.js";
import { type Database, prepared, type Queryable } from "../platform/db.js";
import { timeOrderedId } from "../platform/ids.js";
import { money } from "../platform/money.js";
import { beforePosition } from "../platform/paging.js";
import { isConnectionError } from "../platform/pgerrors.js";
import { timestamp } from "../platform/time.js";
import type { PricedOrder } from "./domain/pricing.js";
import { isTerminal, statusFromName, statusName } from "./domain/status.js";
import { sagaRevision } from "./saga/revision.js";
import { asError } from "../platform/errors.js";

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
  /** The step's commands for a new order, written to the outbox with it. */
  commands(orderId: string, order: NewOrder): OutgoingMessage[];
  /** Told of each order the statement created, with its saga revision (see `sagaRevision`). */
  started?(order: Order, revision: string): void;
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

/** Reads orders with their items and history, in one round trip, by id (the ones that exist). */
export async function readOrders(q: Queryable, orderIds: readonly string[]): Promise<Map<string, Order>> {
  const { rows } = await q.query<OrderRow & { items: ItemRow[]; history: Array<Omit<HistoryRow, "at"> & { at: string }> }>(
    prepared(`SELECT ${orderColumns}, ${itemsJson}, ${historyJson} FROM orders WHERE order_id = ANY($1::uuid[])`, [orderIds]),
  );
  return new Map(rows.map((row) => [row.order_id, toOrder(row, row.items, row.history.map((h) => ({ ...h, at: new Date(h.at) })))]));
}

/** Reads one order with its items and history (one round trip), or undefined. */
export async function readOrder(q: Queryable, orderId: string): Promise<Order | undefined> {
  return (await readOrders(q, [orderId])).get(orderId);
}

/**
 * Which of the customer's orders a page reads: all of them newest first, skipping those of other
 * statuses; or, when no status asked for is CONFIRMED, only the orders in flight and/or those
 * concluded without being confirmed, each through its own partial index.
 */
type PageScan = "all" | "in_flight" | "unconfirmed" | "in_flight_or_unconfirmed";

const unconfirmedOutcomes: ReadonlySet<OrderStatus> = new Set([OrderStatus.REJECTED, OrderStatus.CANCELLED]);

function pageScan(statuses: readonly OrderStatus[]): PageScan {
  // An order in a status that is not terminal is in flight (the orders_open_while_in_flight check);
  // one concluded is not (the saga concludes an order in the write that ends its last step).
  const open = statuses.some((status) => !isTerminal(status));
  const unconfirmed = statuses.some((status) => unconfirmedOutcomes.has(status));
  const confirmed = statuses.some((status) => isTerminal(status) && !unconfirmedOutcomes.has(status));
  if (confirmed || (!open && !unconfirmed)) return "all";
  if (open && unconfirmed) return "in_flight_or_unconfirmed";
  return open ? "in_flight" : "unconfirmed";
}

/** The branches of a page's union: the rows each reads, and the scans that turn it on. */
const pageBranches = [
  { condition: "", scans: ["all"] },
  { condition: " AND in_flight", scans: ["in_flight", "in_flight_or_unconfirmed"] },
  { condition: " AND unconfirmed_outcome IS NOT NULL", scans: ["unconfirmed", "in_flight_or_unconfirmed"] },
] satisfies Array<{ condition: string; scans: PageScan[] }>;

/**
 * One page of a customer's orders per input row (`page` numbers the rows), newest first: each branch
 * of the union one index range scan that starts at the page's position (see beforePosition), those
 * the page's PageScan does not name off (a one-time filter), and the branches' rows merged by position.
 */
function branchOfPage({ condition, scans }: (typeof pageBranches)[number]): string {
  return `(SELECT ${orderColumns}, ${itemsJson} FROM orders
     WHERE p.scan IN (${scans.map((scan) => `'${scan}'`).join(", ")})${condition} AND customer_id = p.customer_id AND seq < ${beforePosition("p.before_seq")}
       AND (p.statuses IS NULL OR status = ANY(string_to_array(p.statuses, ',')))
     ORDER BY seq DESC LIMIT p.size)`;
}
const listPagesSql = `SELECT p.page, o.* FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::text[]) WITH ORDINALITY AS p(customer_id, statuses, before_seq, size, scan, page)
  CROSS JOIN LATERAL (SELECT * FROM (${pageBranches.map(branchOfPage).join(" UNION ALL ")}) branches ORDER BY seq DESC LIMIT p.size) o
  ORDER BY p.page, o.seq DESC`;

export interface ListedOrder {
  order: Order;
  /** The order's position, for the next page's token. */
  seq: string;
}

interface PageRequest {
  customerId: string;
  statuses: OrderStatus[];
  limit: number;
  beforeSeq: string | undefined;
}

const insertOrdersSql = `WITH input AS (
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bytea[])
       WITH ORDINALITY AS t(order_id, customer_id, total_minor, currency, idempotency_key, request_hash, n)),
   o AS (
     INSERT INTO orders (order_id, customer_id, status, total_minor, currency, idempotency_key, request_hash, awaiting, step_deadline)
     SELECT order_id, customer_id, 'PENDING', total_minor, currency, idempotency_key, request_hash,
            $7::text[], CASE WHEN cardinality($7::text[]) > 0 THEN now() + make_interval(secs => $8) END
       FROM input ORDER BY n
     ON CONFLICT DO NOTHING
     RETURNING ${orderColumns}, ${sagaRevision()} AS revision),
   i AS (
     INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_minor)
     SELECT l.order_id, l.line_no, l.sku, l.qty, l.price
       FROM unnest($9::uuid[], $10::int[], $11::text[], $12::bigint[], $13::bigint[]) AS l(order_id, line_no, sku, qty, price)
      WHERE l.order_id IN (SELECT order_id FROM o)),
   h AS (
     INSERT INTO order_history (order_id, from_status, to_status, reason)
     SELECT order_id, 'UNSPECIFIED', 'PENDING', 'order placed' FROM o
     RETURNING order_id, at)`;

/** An order to insert, the id it gets and the trace context of the request that placed it. */
interface Insert {
  orderId: string;
  order: NewOrder;
  trace: Record<string, string>;
}

/**
 * One statement, and so one atomic write without BEGIN / COMMIT, inserts the orders (with
 * their saga step), their items, first history entries and the step's commands in the
 * outbox. An order whose idempotency key is taken is skipped (ON CONFLICT DO NOTHING,
 * with its items and commands) and comes back undefined; the others come back built
 * from what was written, without reading them back.
 */
async function insertOrders(q: Queryable, inserts: readonly Insert[], saga: SagaStart): Promise<(Order | undefined)[]> {
  const lines = inserts.flatMap(({ orderId, order }) => order.priced.lines.map((line, index) => ({ orderId, lineNo: index + 1, ...line })));
  const values: unknown[] = [
    inserts.map((x) => x.orderId),
    inserts.map((x) => x.order.customerId),
    inserts.map((x) => x.order.priced.totalMinor.toString()),
    inserts.map((x) => x.order.priced.currency),
    inserts.map((x) => x.order.idempotencyKey ?? null),
    inserts.map((x) => x.order.requestHash ?? null),
    saga.awaiting,
    saga.stepTimeoutMs / 1000,
    lines.map((l) => l.orderId),
    lines.map((l) => l.lineNo),
    lines.map((l) => l.sku),
    lines.map((l) => l.quantity.toString()),
    lines.map((l) => l.unitPriceMinor.toString()),
  ];
  // The commands are built before the insert: they need only what the requests decided.
  const commands = inserts.flatMap(({ orderId, order, trace }) => saga.commands(orderId, order).map((command) => ({ ...command, headers: { ...trace, ...command.headers } })));
  const outbox = foldOutbox(saga.outboxSchema, commands, values, "SELECT order_id::text FROM o");
  // Each order comes back with its outbox rows, for this process's relay to publish.
  const outboxJoin = " LEFT JOIN (SELECT key, json_agg(json_build_object('id', id::text, 'msg_id', msg_id)) AS outbox_written FROM ob GROUP BY key) w ON w.key = o.order_id::text";
  const { rows } = await q.query<OrderRow & { revision: string; history_at: Date; outbox_written?: WrittenRow[] | null }>(
    prepared(`${insertOrdersSql}${outbox.ctes} SELECT o.*, h.at AS history_at${outbox.columns}, w.outbox_written FROM o JOIN h USING (order_id)${outboxJoin}`, values),
  );
  outboxWritten(outbox.insert, rows.flatMap((r) => r.outbox_written ?? []));
  const written = new Map(rows.map((row) => [row.order_id, row]));
  return inserts.map(({ orderId, order }) => {
    const row = written.get(orderId);
    if (!row) return undefined;
    const items = order.priced.lines.map((l) => ({ order_id: orderId, sku: l.sku, quantity: l.quantity.toString(), unit_price_minor: l.unitPriceMinor.toString() }));
    const created = toOrder(row, items, [{ from_status: "UNSPECIFIED", to_status: "PENDING", reason: "order placed", at: row.history_at }]);
    saga.started?.(created, row.revision);
    return created;
  });
}

/** What CreateOrder asks the store for, batched. */
interface CreateRequest {
  order: NewOrder;
  saga: SagaStart;
  /** The caller's trace context: the batch runs in the first caller's. */
  trace: Record<string, string>;
}

export class OrderStore {
  /** Orders created in one turn of the event loop go to Postgres as one statement. */
  private readonly creations = batchPerTurn<CreateRequest, { order: Order; created: boolean }>((requests) => this.createMany(requests), 200);

  /** GetOrders that missed the cache in one turn read Postgres in one statement. */
  private readonly reads = batchPerTurn<string, Order | null>(async (ids) => (await this.db.readFreshMany(ids, readOrders)).map((order) => order ?? null), 100);

  /** ListOrders of one turn, in one statement. */
  private readonly pages = batchPerTurn<PageRequest, ListedOrder[]>((requests) => this.listMany(requests), 50);

  constructor(readonly db: Database) {}

  /**
   * Inserts a PENDING order — with its items, first history entry and, in the
   * same statement, the saga's first step — or returns the order an earlier
   * request with the same idempotency key created. The unique index of (customer,
   * key) decides: a new key (the common case) costs no lookup, a repeated
   * one is skipped by the insert, and the earlier order is read.
   */
  create(order: NewOrder, saga: SagaStart): Promise<{ order: Order; created: boolean }> {
    return this.creations.load({ order, saga, trace: currentTraceHeaders() });
  }

  private async createMany(requests: readonly CreateRequest[]): Promise<({ order: Order; created: boolean } | Error)[]> {
    const results: ({ order: Order; created: boolean } | Error)[] = [];
    // One statement per saga start (in practice there is one).
    for (const saga of new Set(requests.map((r) => r.saga))) {
      const group = requests.flatMap((request, index) => (request.saga === saga ? [{ request, index }] : []));
      const inserts = group.map(({ request }) => ({ orderId: timeOrderedId(), order: request.order, trace: request.trace }));
      let written: (Order | undefined)[] | Error;
      try {
        written = await insertOrders(this.db.primary, inserts, saga);
      } catch (error) {
        written = asError(error);
      }
      // One bad order must not fail the others: each on its own. Not when the answer was lost
      // with the connection: the statement may have committed, and a second insert would
      // create each order twice.
      if (written instanceof Error && group.length > 1 && !isConnectionError(written)) {
        for (const { request, index } of group) results[index] = await this.createMany([request]).then((r) => r[0]!);
        continue;
      }
      for (const [i, { request, index }] of group.entries()) {
        results[index] = written instanceof Error ? written : await this.createdOrEarlier(request.order, written[i]);
      }
    }
    return results;
  }

  /** The inserted order, or the one an earlier request with the same idempotency key created. */
  private async createdOrEarlier(order: NewOrder, inserted: Order | undefined): Promise<{ order: Order; created: boolean } | Error> {
    if (inserted) return { order: inserted, created: true };
    try {
      const existing = order.idempotencyKey ? await this.findByKey(this.db.primary, order.customerId, order.idempotencyKey, order.requestHash) : undefined;
      return existing ? { order: existing, created: false } : new Error("the order was not inserted and no earlier order holds its idempotency key");
    } catch (error) {
      return asError(error);
    }
  }

  /** The order an earlier request with this idempotency key created (IdempotencyConflict if it was another request). */
  earlier(customerId: string, key: string, hash: Buffer | undefined): Promise<Order | undefined> {
    return this.findByKey(this.db.primary, customerId, key, hash);
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
  async get(orderId: string): Promise<Order | undefined> {
    return (await this.reads.load(orderId)) ?? undefined;
  }

  /** A customer's orders, newest first, before position `beforeSeq`. */
  list(customerId: string, statuses: OrderStatus[], limit: number, beforeSeq: string | undefined): Promise<ListedOrder[]> {
    return this.pages.load({ customerId, statuses, limit, beforeSeq });
  }

  /** The pages of several ListOrders, in one statement (one index range scan per page). */
  private async listMany(requests: readonly PageRequest[]): Promise<ListedOrder[][]> {
    const { rows } = await this.db.replica.query<OrderRow & { items: ItemRow[]; page: string }>(
      prepared(listPagesSql, [
        requests.map((r) => r.customerId),
        // Status names are A–Z and _: a comma-joined list per page stands in for an array of arrays.
        requests.map((r) => (r.statuses.length > 0 ? r.statuses.map(statusName).join(",") : null)),
        requests.map((r) => r.beforeSeq ?? null),
        requests.map((r) => r.limit),
        requests.map((r) => pageScan(r.statuses)),
      ]),
    );
    const pages = requests.map((): ListedOrder[] => []);
    for (const row of rows) pages[Number(row.page) - 1]?.push({ order: toOrder(row, row.items), seq: row.seq });
    return pages;
  }
}

