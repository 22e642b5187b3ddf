import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import type { Database } from "../platform/db.js";
import { useOrderSchema } from "../../test/support/order-schema.js";
import { indexRowsRead, statementsSent } from "../../test/support/plans.js";
import { type ListedOrder, OrderStore, type SagaStart } from "./store.js";

const orders = useOrderSchema("store");
let db: Database;
let store: OrderStore;

beforeAll(() => {
  db = orders.db();
  store = new OrderStore(db);
});

async function confirmedOrder(items: number, customerId = "c1", status = "CONFIRMED"): Promise<string> {
  const orderId = randomUUID();
  await db.primary.query(
    `WITH o AS (INSERT INTO orders (order_id, customer_id, status, total_minor, currency) VALUES ($1, $3, $4, $2 * 100, 'USD') RETURNING order_id)
     INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_minor) SELECT order_id, n, 'SKU-' || n, 1, 100 FROM o, generate_series(1, $2::int) AS n`,
    [orderId, items, customerId, status],
  );
  return orderId;
}

describe("OrderStore.get", () => {
  it("reads the GetOrders of one turn of the event loop in one statement, each its own order, a missing one undefined", async () => {
    const [a, b] = [await confirmedOrder(1), await confirmedOrder(3)];
    const missing = randomUUID();
    let checkouts = 0;
    const count = () => void checkouts++;
    db.replica.on("acquire", count);
    try {
      const [orderA, orderB, none] = await Promise.all([store.get(a), store.get(b), store.get(missing)]);
      expect(checkouts).toBe(1);
      expect([orderA?.orderId, orderA?.items.length, orderA?.status]).toEqual([a, 1, OrderStatus.CONFIRMED]);
      expect([orderB?.orderId, orderB?.items.map((i) => i.sku)]).toEqual([b, ["SKU-1", "SKU-2", "SKU-3"]]);
      expect(none).toBeUndefined();
      // Calls in separate turns are separate statements.
      expect((await store.get(a))?.orderId).toBe(a);
      expect((await store.get(b))?.orderId).toBe(b);
      expect(checkouts).toBe(3);
    } finally {
      db.replica.off("acquire", count);
    }
  });
});

describe("OrderStore.list", () => {
  it("pages a customer's orders newest first, filtered by status, the same on every call (its statement is prepared)", async () => {
    const customer = `c-${randomUUID()}`;
    const ids: string[] = [];
    for (const status of ["CONFIRMED", "REJECTED", "CONFIRMED", "CONFIRMED", "REJECTED"]) ids.push(await confirmedOrder(2, customer, status));
    const newestFirst = [...ids].reverse();
    const confirmed = newestFirst.filter((_, i) => i !== 0 && i !== 3);
    // More calls than Postgres's five custom plans, so a generic plan serves the last ones.
    for (let round = 0; round < 4; round++) {
      const all = await store.list(customer, [], 10, undefined);
      expect(all.map((r) => r.order.orderId)).toEqual(newestFirst);
      expect(all[0]?.order.items).toHaveLength(2);
      const firstPage = await store.list(customer, [OrderStatus.CONFIRMED], 2, undefined);
      expect(firstPage.map((r) => r.order.orderId)).toEqual(confirmed.slice(0, 2));
      const secondPage = await store.list(customer, [OrderStatus.CONFIRMED], 2, firstPage.at(-1)?.seq);
      expect(secondPage.map((r) => r.order.orderId)).toEqual(confirmed.slice(2));
    }
  });

  it("reads the ListOrders of one turn of the event loop in one statement, each its own page", async () => {
    const [first, second] = [`c-${randomUUID()}`, `c-${randomUUID()}`];
    const a = [await confirmedOrder(1, first), await confirmedOrder(1, first, "REJECTED"), await confirmedOrder(1, first)];
    const b = [await confirmedOrder(2, second)];
    let checkouts = 0;
    const count = () => void checkouts++;
    db.replica.on("acquire", count);
    try {
      const [all, rejected, newestOnly, other, nobody] = await Promise.all([
        store.list(first, [], 10, undefined),
        store.list(first, [OrderStatus.REJECTED], 10, undefined),
        store.list(first, [], 1, undefined),
        store.list(second, [OrderStatus.CONFIRMED, OrderStatus.REJECTED], 10, undefined),
        store.list(`c-${randomUUID()}`, [], 10, undefined),
      ]);
      expect(checkouts).toBe(1);
      expect(all.map((r) => r.order.orderId)).toEqual([...a].reverse());
      expect(rejected.map((r) => r.order.orderId)).toEqual([a[1]]);
      expect(newestOnly.map((r) => r.order.orderId)).toEqual([a[2]]);
      expect(other.map((r) => [r.order.orderId, r.order.items.length])).toEqual([[b[0], 2]]);
      expect(nobody).toEqual([]);
    } finally {
      db.replica.off("acquire", count);
    }
  });
});

describe("OrderStore.list deep in a long history", () => {
  it("reads a page from its position, also on the plan kept once prepared: none of the newer orders", async () => {
    const customer = `c-${randomUUID()}`;
    await db.primary.query(
      `INSERT INTO orders (order_id, customer_id, status, total_minor, currency)
       SELECT gen_random_uuid(), $1, 'CONFIRMED', 100, 'USD' FROM generate_series(1, 2000)`,
      [customer],
    );
    const oldest = await db.primary.query<{ seq: string }>("SELECT seq FROM orders WHERE customer_id = $1 ORDER BY seq LIMIT 11", [customer]);
    const before = oldest.rows[10]!.seq;
    let page: ListedOrder[] = [];
    const [statement] = await statementsSent(db.replica, async () => (page = await store.list(customer, [], 5, before)));
    expect(page.map((listed) => listed.seq)).toEqual(oldest.rows.slice(5, 10).map((r) => r.seq).reverse());
    // The 10 orders older than the position at most; none of the 1,990 newer ones.
    expect(await indexRowsRead(db.replica, statement!, "orders_by_customer")).toBeLessThanOrEqual(10);
  });
});

describe("OrderStore.list by status", () => {
  const inFlight = (customer: string, status: string, count: number) =>
    db.primary.query(
      `INSERT INTO orders (order_id, customer_id, status, total_minor, currency, awaiting, step_deadline)
       SELECT gen_random_uuid(), $1, $2, 100, 'USD', '{fraud}', now() + interval '1 minute' FROM generate_series(1, $3::int)`,
      [customer, status, count],
    );

  it("reads only the customer's orders in flight when every status asked for is one of theirs: none of 2,000 concluded ones", async () => {
    const customer = `c-${randomUUID()}`;
    await inFlight(customer, "PENDING", 2);
    await inFlight(customer, "CANCELLING", 1);
    await db.primary.query(
      `INSERT INTO orders (order_id, customer_id, status, total_minor, currency)
       SELECT gen_random_uuid(), $1, 'CONFIRMED', 100, 'USD' FROM generate_series(1, 2000)`,
      [customer],
    );
    await inFlight(`c-${randomUUID()}`, "PENDING", 5);
    const open = await db.primary.query<{ seq: string; status: string }>("SELECT seq, status FROM orders WHERE customer_id = $1 AND in_flight ORDER BY seq DESC", [customer]);

    let page: ListedOrder[] = [];
    const [statement] = await statementsSent(db.replica, async () => (page = await store.list(customer, [OrderStatus.PENDING, OrderStatus.CANCELLING], 5, undefined)));
    expect(page.map((listed) => listed.seq)).toEqual(open.rows.map((r) => r.seq));
    expect(await indexRowsRead(db.replica, statement!, ["orders_by_customer", "orders_in_flight_by_customer"])).toBeLessThanOrEqual(3);

    const pending = await store.list(customer, [OrderStatus.PENDING], 1, undefined);
    expect(pending.map((listed) => [listed.seq, listed.order.status])).toEqual([[open.rows.filter((r) => r.status === "PENDING")[0]!.seq, OrderStatus.PENDING]]);
    const next = await store.list(customer, [OrderStatus.PENDING], 5, pending[0]!.seq);
    expect(next.map((listed) => listed.seq)).toEqual([open.rows.filter((r) => r.status === "PENDING")[1]!.seq]);
    // A concluded status among those asked for reads the customer's orders as before.
    expect(await store.list(customer, [OrderStatus.PENDING, OrderStatus.CONFIRMED], 5, undefined)).toHaveLength(5);
  });

  it("reads only the customer's orders concluded without confirmation when only REJECTED or CANCELLED is asked for: none of 2,000 confirmed ones", async () => {
    const customer = `c-${randomUUID()}`;
    const concluded = (status: string, count: number) =>
      db.primary.query(
        `INSERT INTO orders (order_id, customer_id, status, total_minor, currency) SELECT gen_random_uuid(), $1, $2, 100, 'USD' FROM generate_series(1, $3::int)`,
        [customer, status, count],
      );
    await concluded("REJECTED", 2);
    await concluded("CANCELLED", 1);
    await inFlight(customer, "CANCELLING", 1);
    await concluded("CONFIRMED", 2_000);
    const unconfirmed = await db.primary.query<{ seq: string; status: string }>(
      "SELECT seq, status FROM orders WHERE customer_id = $1 AND status IN ('REJECTED', 'CANCELLED') ORDER BY seq DESC",
      [customer],
    );

    let page: ListedOrder[] = [];
    const [statement] = await statementsSent(db.replica, async () => (page = await store.list(customer, [OrderStatus.REJECTED, OrderStatus.CANCELLED], 5, undefined)));
    expect(page.map((listed) => listed.seq)).toEqual(unconfirmed.rows.map((r) => r.seq));
    expect(await indexRowsRead(db.replica, statement!, ["orders_by_customer", "orders_unconfirmed_by_customer"])).toBeLessThanOrEqual(3);

    const rejected = await store.list(customer, [OrderStatus.REJECTED], 1, undefined);
    const rejectedSeqs = unconfirmed.rows.filter((r) => r.status === "REJECTED").map((r) => r.seq);
    expect(rejected.map((listed) => [listed.seq, listed.order.status])).toEqual([[rejectedSeqs[0], OrderStatus.REJECTED]]);
    expect((await store.list(customer, [OrderStatus.REJECTED], 5, rejected[0]!.seq)).map((listed) => listed.seq)).toEqual([rejectedSeqs[1]]);
    // A confirmed order among those asked for reads the customer's orders as before.
    expect(await store.list(customer, [OrderStatus.REJECTED, OrderStatus.CONFIRMED], 5, undefined)).toHaveLength(5);
  });

  it("reads only the customer's orders in flight and those concluded without confirmation when both kinds are asked for, merged newest first: none of 2,000 confirmed ones", async () => {
    const customer = `c-${randomUUID()}`;
    const concluded = (status: string) =>
      db.primary.query("INSERT INTO orders (order_id, customer_id, status, total_minor, currency) VALUES (gen_random_uuid(), $1, $2, 100, 'USD')", [customer, status]);
    await inFlight(customer, "PENDING", 1);
    await concluded("REJECTED");
    await inFlight(customer, "PENDING", 1);
    await concluded("CANCELLED");
    await inFlight(customer, "CANCELLING", 1);
    await concluded("REJECTED");
    await db.primary.query(
      `INSERT INTO orders (order_id, customer_id, status, total_minor, currency)
       SELECT gen_random_uuid(), $1, 'CONFIRMED', 100, 'USD' FROM generate_series(1, 2000)`,
      [customer],
    );
    const asked = [OrderStatus.PENDING, OrderStatus.REJECTED, OrderStatus.CANCELLED];
    const expected = await db.primary.query<{ seq: string }>(
      "SELECT seq FROM orders WHERE customer_id = $1 AND status IN ('PENDING', 'REJECTED', 'CANCELLED') ORDER BY seq DESC",
      [customer],
    );
    expect(expected.rows).toHaveLength(5);

    let first: ListedOrder[] = [];
    const [statement] = await statementsSent(db.replica, async () => (first = await store.list(customer, asked, 3, undefined)));
    expect(first.map((listed) => listed.order.status)).toEqual([OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.PENDING]);
    const second = await store.list(customer, asked, 3, first.at(-1)!.seq);
    expect([...first, ...second].map((listed) => listed.seq)).toEqual(expected.rows.map((r) => r.seq));
    expect(await indexRowsRead(db.replica, statement!, ["orders_by_customer", "orders_in_flight_by_customer", "orders_unconfirmed_by_customer"])).toBeLessThanOrEqual(8);
  });

  it("holds an order in a status of the saga's steps to being in flight: Postgres refuses one that is not", async () => {
    const write = db.primary.query("INSERT INTO orders (order_id, customer_id, status, total_minor, currency) VALUES ($1, 'c1', 'STOCK_RESERVED', 100, 'USD')", [randomUUID()]);
    await expect(write).rejects.toMatchObject({ code: "23514", constraint: "orders_open_while_in_flight" });
  });
});

describe("OrderStore.create", () => {
  const newOrder = (customerId: string) => ({ customerId, priced: { lines: [{ sku: "SKU-1", quantity: 1n, unitPriceMinor: 100n }], totalMinor: 100n, currency: "USD" }, idempotencyKey: undefined, requestHash: undefined });
  // A first step without commands: these tests are about the orders' rows.
  const saga: SagaStart = { awaiting: ["fraud"], stepTimeoutMs: 60_000, outboxSchema: orders.schema, commands: () => [] };
  const ordersOf = async (customerId: string) => Number((await db.primary.query<{ n: string }>("SELECT count(*) AS n FROM orders WHERE customer_id = $1", [customerId])).rows[0]?.n);

  it("does not insert a batch's orders again one by one when the batch's answer was lost with its connection: it may have committed", async () => {
    const customer = `c-${randomUUID()}`;
    const pool = db.primary;
    const query = pool.query;
    // The batch's statement runs and commits in Postgres; its answer then never arrives.
    pool.query = function (this: typeof pool, ...args: unknown[]) {
      pool.query = query;
      return (query as (...a: unknown[]) => Promise<unknown>).apply(this, args).then(() => {
        throw new Error("Connection terminated unexpectedly");
      });
    } as typeof pool.query;
    try {
      const created = await Promise.allSettled([store.create(newOrder(customer), saga), store.create(newOrder(customer), saga)]);
      expect(created.map((c) => c.status)).toEqual(["rejected", "rejected"]);
      expect(await ordersOf(customer)).toBe(2);
    } finally {
      pool.query = query;
    }
  });

  it("still inserts the others of a batch one by one when Postgres refused the batch for one of them", async () => {
    const customer = `c-${randomUUID()}`;
    const tooLong = { ...newOrder(customer), priced: { ...newOrder(customer).priced, currency: "DOLLARS" } };
    const created = await Promise.allSettled([store.create(newOrder(customer), saga), store.create(tooLong, saga), store.create(newOrder(customer), saga)]);
    expect(created.map((c) => c.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(await ordersOf(customer)).toBe(2);
  });
});
