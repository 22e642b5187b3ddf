import { randomUUID } from "node:crypto";
import { create, fromBinary, type Message } from "@bufbuild/protobuf";
import { context, trace, TraceFlags } from "@opentelemetry/api";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { Decision, FraudAssessedSchema } from "../../../gen/orderflow/fraud/v1/fraud_pb.js";
import { ReserveStockSchema, StockReservedSchema } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { PaymentChargedSchema } from "../../../gen/orderflow/payment/v1/payment_pb.js";
import { recordingPool, useTraceContext } from "../../platform/bus/testkit.js";
import type { Database } from "../../platform/db.js";
import { OrderStore } from "../store.js";
import { onOrdersChanged } from "./changes.js";
import { InFlightOrders } from "./in-flight.js";
import { ReplyApplier } from "./replies.js";
import { sagaStart } from "./start.js";
import { decide, type Reply } from "./orchestrator.js";
import { sagaRevisionOf } from "./revision.js";
import { planAdvance, readSagaOrders, type SagaOrder } from "./state.js";
import { useOrderSchema } from "../../../test/support/order-schema.js";
import { sagaOrder } from "../../../test/support/saga-order.js";
import { type Transition, writeTransitions, writeTransitionsIfUnchanged } from "./transitions.js";

const orderSchema = useOrderSchema("transitions");
const schema = orderSchema.schema;
const timing = { stepTimeoutMs: 30_000 };
useTraceContext();
let db: Database;

beforeAll(() => {
  db = orderSchema.db();
});

async function pendingOrder(): Promise<string> {
  const orderId = randomUUID();
  await db.primary.query(
    `WITH o AS (INSERT INTO orders (order_id, customer_id, status, total_minor, currency, awaiting, step_deadline)
                VALUES ($1, 'c1', 'PENDING', 500, 'USD', '{fraud}', now() + interval '30 s') RETURNING order_id)
     INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_minor) SELECT order_id, n, 'SKU-' || n, n, 100 FROM o, generate_series(1, 2) AS n`,
    [orderId],
  );
  return orderId;
}

/** An order placed as CreateOrder places it: awaiting the fraud check, the reservation and the charge. */
async function placedOrder(inFlight = new InFlightOrders()): Promise<string> {
  const { order } = await new OrderStore(db).create(
    { customerId: "c1", priced: { lines: [{ sku: "SKU-1", quantity: 1n, unitPriceMinor: 100n }], totalMinor: 100n, currency: "USD" }, idempotencyKey: undefined, requestHash: undefined },
    { ...sagaStart(timing, inFlight), outboxSchema: schema },
  );
  return order.orderId;
}

const fraud = (orderId: string, decision: Decision): Message => create(FraudAssessedSchema, { orderId, decision, reasons: decision === Decision.APPROVE ? [] : ["blocked"] });

interface OutboxRow {
  key: string;
  subject: string;
  payload: Buffer;
  traceparent: string | null;
}

async function outbox(orderIds: string[]): Promise<OutboxRow[]> {
  const { rows } = await db.primary.query<OutboxRow>("SELECT key, subject, payload, headers->>'traceparent' AS traceparent FROM outbox WHERE key = ANY($1::text[]) ORDER BY id", [orderIds]);
  return rows;
}

async function orderRows(orderIds: string[]) {
  const { rows } = await db.primary.query<{ order_id: string; status: string; version: string; awaiting: string[]; deadline_set: boolean; concluded: boolean; status_reason: string; stock_reserved: boolean; charged: boolean }>(
    `SELECT order_id, status, version, awaiting, step_deadline IS NOT NULL AS deadline_set, concluded_at IS NOT NULL AS concluded, status_reason, stock_reserved, charged FROM orders WHERE order_id = ANY($1::uuid[])`,
    [orderIds],
  );
  return new Map(rows.map((r) => [r.order_id, r]));
}

async function historyOf(orderId: string): Promise<string[]> {
  const { rows } = await db.primary.query<{ step: string }>("SELECT from_status || '>' || to_status AS step FROM order_history WHERE order_id = $1 ORDER BY id", [orderId]);
  return rows.map((r) => r.step);
}

describe("a batch of saga replies", () => {
  it("is written in one statement: last state per order, one version per status change, history in order, one notice per order, the commands in the outbox", async () => {
    const [a, b] = [await pendingOrder(), await pendingOrder()];
    const notices: string[] = [];
    const unregister = onOrdersChanged((orderIds) => notices.push(...orderIds));
    const { db: counting, statements } = recordingPool(db.primary);
    try {
      const applier = new ReplyApplier(counting, timing, schema);
      // One turn of the event loop. Order a: approved, then reserved (two changes of one
      // order in one batch), then a duplicate; order b: declined by fraud.
      await Promise.all([
        applier.apply(fraud(a, Decision.APPROVE)),
        applier.apply(fraud(b, Decision.DECLINE)),
        applier.apply(create(StockReservedSchema, { orderId: a })),
        applier.apply(create(StockReservedSchema, { orderId: a })),
      ]);
      expect(statements).toHaveLength(2); // one read, one write
      const byId = await orderRows([a, b]);
      expect(byId.get(a)).toMatchObject({ status: "STOCK_RESERVED", version: "3", awaiting: ["charge"], deadline_set: true, concluded: false });
      expect(byId.get(b)).toMatchObject({ status: "REJECTED", version: "2", awaiting: [], deadline_set: false, concluded: true, status_reason: "fraud check declined: blocked" });
      expect(await historyOf(a)).toEqual(["PENDING>FRAUD_APPROVED", "FRAUD_APPROVED>STOCK_RESERVED"]);
      expect(await historyOf(b)).toEqual(["PENDING>REJECTED"]);
      const sent = await outbox([a, b]);
      expect(sent.map((m) => `${m.key === a ? "a" : "b"} ${m.subject}`)).toEqual(["a inventory.cmd.reserve", "b order.evt.rejected", "a payment.cmd.charge"]);
      // The reservation asks for the order's lines, which came with the read.
      const reserve = fromBinary(ReserveStockSchema, sent[0]!.payload);
      expect(reserve.lines.map((l) => `${l.sku}×${l.quantity}`)).toEqual(["SKU-1×1", "SKU-2×2"]);
      expect(notices.sort()).toEqual([a, b].sort());
    } finally {
      unregister();
    }
  });

  it("applies nothing twice: a redelivered reply changes nothing", async () => {
    const a = await pendingOrder();
    const applier = new ReplyApplier(db.primary, timing, schema);
    await applier.apply(fraud(a, Decision.APPROVE));
    await applier.apply(fraud(a, Decision.APPROVE));
    expect((await orderRows([a])).get(a)).toMatchObject({ status: "FRAUD_APPROVED", version: "2" });
    expect(await historyOf(a)).toEqual(["PENDING>FRAUD_APPROVED"]);
    expect((await outbox([a])).map((m) => m.subject)).toEqual(["inventory.cmd.reserve"]);
  });

  it("locks a batch's orders in one order whatever the order of its replies, so two writes over the same orders cannot deadlock", async () => {
    const [first, second] = [await pendingOrder(), await pendingOrder()].sort();
    const applier = new ReplyApplier(db.primary, timing, schema);
    const other = await db.primary.connect();
    try {
      // Another writer that locks in the same order: the first order now, the second later.
      await other.query("BEGIN");
      await other.query("UPDATE orders SET updated_at = now() WHERE order_id = $1", [first]);
      // One batch whose replies name the second order first: it must wait for the first order
      // without holding the second, or the other writer's next lock closes a cycle.
      const applying = Promise.allSettled([applier.apply(fraud(second!, Decision.APPROVE)), applier.apply(fraud(first!, Decision.APPROVE))]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      const otherWrite = await other.query("UPDATE orders SET updated_at = now() WHERE order_id = $1", [second]).then(
        () => "ok",
        (error: unknown) => String(error),
      );
      await other.query(otherWrite === "ok" ? "COMMIT" : "ROLLBACK");
      expect(otherWrite).toBe("ok");
      expect((await applying).map((r) => (r.status === "fulfilled" ? "ok" : String(r.reason)))).toEqual(["ok", "ok"]);
    } finally {
      other.release();
    }
    const rows = await orderRows([first!, second!]);
    expect([rows.get(first!)?.status, rows.get(second!)?.status]).toEqual(["FRAUD_APPROVED", "FRAUD_APPROVED"]);
  });

  it("decides a reply again when its order changed after it was read: a cancellation in between is not overwritten", async () => {
    const a = await pendingOrder();
    const applier = new ReplyApplier(db.primary, timing, schema);
    const other = await db.primary.connect();
    try {
      // Another transaction cancels the order and holds the row until it commits.
      await other.query("BEGIN");
      await other.query("UPDATE orders SET status = 'CANCELLED', awaiting = '{}', version = version + 1, step_deadline = NULL WHERE order_id = $1", [a]);
      const applied = applier.apply(fraud(a, Decision.APPROVE));
      // The applier read the order as PENDING and now waits on the row for its write.
      await expect.poll(async () => (await db.primary.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")).rows[0]?.n, { timeout: 5_000 }).toBe(1);
      await other.query("COMMIT");
      await applied;
    } finally {
      other.release();
    }
    // Decided again on the cancelled order, the approval is a late reply: nothing changes.
    expect((await orderRows([a])).get(a)).toMatchObject({ status: "CANCELLED", version: "2" });
    expect(await historyOf(a)).toEqual([]);
    expect(await outbox([a])).toEqual([]);
  });

  it("carries the reply's trace context to the commands it causes", async () => {
    const a = await pendingOrder();
    const applier = new ReplyApplier(db.primary, timing, schema);
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const ctx = trace.setSpanContext(context.active(), { traceId, spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED });
    await context.with(ctx, () => applier.apply(fraud(a, Decision.APPROVE)));
    expect((await outbox([a])).map((m) => m.traceparent?.split("-")[1])).toEqual([traceId]);
  });

  it("updates an order's row in place while a step follows (no new index entries), and leaves the in-flight index when the last step ends", async () => {
    const orderId = await pendingOrder();
    const step = (status: string, awaiting: string[], concluded: boolean): Transition => ({
      orderId,
      fromStatus: "PENDING",
      status,
      reason: "",
      awaiting,
      compensateTo: null,
      stockReserved: false, charged: false,
      statusChanged: true,
      startedStep: awaiting.length > 0,
      concluded,
    });
    // Updates to the orders table by this connection, all and in place (HOT); compared
    // before and after, as Postgres 15 reports what is not yet flushed, not one transaction's.
    const updates = async (tx: pg.PoolClient) => {
      const { rows } = await tx.query<{ all: string; hot: string }>(
        "SELECT pg_stat_get_xact_tuples_updated('orders'::regclass) AS all, pg_stat_get_xact_tuples_hot_updated('orders'::regclass) AS hot",
      );
      return { all: Number(rows[0]?.all), hot: Number(rows[0]?.hot) };
    };
    await db.transaction(async (tx) => {
      const before = await updates(tx);
      const since = async () => {
        const now = await updates(tx);
        return { all: now.all - before.all, hot: now.hot - before.hot };
      };
      await writeTransitions(tx, [step("FRAUD_APPROVED", ["reserve"], false)], timing.stepTimeoutMs);
      await writeTransitions(tx, [step("STOCK_RESERVED", ["charge"], false)], timing.stepTimeoutMs);
      expect(await since()).toEqual({ all: 2, hot: 2 });
      await writeTransitions(tx, [step("CONFIRMED", [], true)], timing.stepTimeoutMs);
      expect(await since()).toEqual({ all: 3, hot: 2 });
    });
  });

  it("announces a status change written in a transaction once it commits, never one rolled back", async () => {
    const [kept, undone] = [await pendingOrder(), await pendingOrder()];
    const approved = (orderId: string): Transition => ({
      orderId,
      fromStatus: "PENDING",
      status: "FRAUD_APPROVED",
      reason: "",
      awaiting: ["reserve"],
      compensateTo: null,
      stockReserved: false, charged: false,
      statusChanged: true,
      startedStep: true,
      concluded: false,
    });
    const notices: string[] = [];
    const unregister = onOrdersChanged((orderIds) => notices.push(...orderIds));
    try {
      await db.transaction(async (tx) => {
        await writeTransitions(tx, [approved(kept)], timing.stepTimeoutMs);
        expect(notices).toEqual([]);
      });
      expect(notices).toEqual([kept]);
      await expect(
        db.transaction(async (tx) => {
          await writeTransitions(tx, [approved(undone)], timing.stepTimeoutMs);
          throw new Error("abort");
        }),
      ).rejects.toThrow("abort");
      expect(notices).toEqual([kept]);
    } finally {
      unregister();
    }
  });
});

describe("the orders a replica wrote last (InFlightOrders)", () => {
  const charged = (orderId: string): Message => create(PaymentChargedSchema, { orderId });
  const reserved = (orderId: string): Message => create(StockReservedSchema, { orderId });

  it("decide the next reply without reading the order back, from CreateOrder on, whichever of fraud, inventory and payment answers first", async () => {
    const inFlight = new InFlightOrders();
    const store = new OrderStore(db);
    const place = async () =>
      (
        await store.create(
          { customerId: "c1", priced: { lines: [{ sku: "SKU-1", quantity: 2n, unitPriceMinor: 100n }], totalMinor: 200n, currency: "USD" }, idempotencyKey: undefined, requestHash: undefined },
          { ...sagaStart(timing, inFlight), outboxSchema: schema },
        )
      ).order.orderId;
    const [fraudFirst, stockFirst, chargeFirst] = [await place(), await place(), await place()];
    expect(inFlight.get(fraudFirst)).toMatchObject({ status: OrderStatus.PENDING, awaiting: ["fraud", "reserve", "charge"], lines: [{ sku: "SKU-1", quantity: 2n }] });
    // The three commands leave with the order; the reservation asks for the order's lines.
    const placed = await outbox([fraudFirst]);
    expect(placed.map((m) => m.subject)).toEqual(["fraud.cmd.assess", "inventory.cmd.reserve", "payment.cmd.charge"]);
    expect(fromBinary(ReserveStockSchema, placed[1]!.payload).lines.map((l) => `${l.sku}×${l.quantity}`)).toEqual(["SKU-1×2"]);

    const { db: counting, statements } = recordingPool(db.primary);
    const applier = new ReplyApplier(counting, timing, schema, inFlight);
    await applier.apply(fraud(fraudFirst, Decision.APPROVE));
    await applier.apply(reserved(fraudFirst));
    await applier.apply(charged(fraudFirst));
    await applier.apply(reserved(stockFirst));
    expect((await orderRows([stockFirst])).get(stockFirst)).toMatchObject({ status: "PENDING", version: "1", awaiting: ["fraud", "charge"] });
    await applier.apply(fraud(stockFirst, Decision.APPROVE));
    await applier.apply(charged(stockFirst));
    await applier.apply(charged(chargeFirst));
    await applier.apply(reserved(chargeFirst));
    expect((await orderRows([chargeFirst])).get(chargeFirst)).toMatchObject({ status: "PENDING", version: "1", awaiting: ["fraud"], stock_reserved: true, charged: true });
    await applier.apply(fraud(chargeFirst, Decision.APPROVE));
    expect(statements).toHaveLength(9); // one write per reply, no read
    // Whichever answers first, the order passes every status, in order; no command is sent twice.
    for (const orderId of [fraudFirst, stockFirst, chargeFirst]) {
      expect((await orderRows([orderId])).get(orderId)).toMatchObject({ status: "CONFIRMED", version: "4", awaiting: [] });
      expect(await historyOf(orderId)).toEqual(["UNSPECIFIED>PENDING", "PENDING>FRAUD_APPROVED", "FRAUD_APPROVED>STOCK_RESERVED", "STOCK_RESERVED>CONFIRMED"]);
      expect((await outbox([orderId])).map((m) => m.subject)).toEqual(["fraud.cmd.assess", "inventory.cmd.reserve", "payment.cmd.charge", "order.evt.confirmed"]);
      // A concluded order is not kept.
      expect(inFlight.get(orderId)).toBeUndefined();
    }
  });

  it("applies the checks' replies arriving in turn while the previous one is written one after another, on the order each write left: no failed write, no read", async () => {
    const inFlight = new InFlightOrders();
    const { order } = await new OrderStore(db).create(
      { customerId: "c1", priced: { lines: [{ sku: "SKU-1", quantity: 1n, unitPriceMinor: 100n }], totalMinor: 100n, currency: "USD" }, idempotencyKey: undefined, requestHash: undefined },
      { ...sagaStart(timing, inFlight), outboxSchema: schema },
    );
    const { db: counting, statements } = recordingPool(db.primary);
    const applier = new ReplyApplier(counting, timing, schema, inFlight);
    const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    // Each reply comes a turn after the one before, while that one's batch is being written.
    const fraudApplied = applier.apply(fraud(order.orderId, Decision.APPROVE));
    await nextTurn();
    const stockApplied = applier.apply(reserved(order.orderId));
    await nextTurn();
    const chargeApplied = applier.apply(charged(order.orderId));
    await Promise.all([fraudApplied, stockApplied, chargeApplied]);
    expect(statements).toHaveLength(3); // one write per reply
    expect((await orderRows([order.orderId])).get(order.orderId)).toMatchObject({ status: "CONFIRMED", version: "4", awaiting: [] });
    expect(await historyOf(order.orderId)).toEqual(["UNSPECIFIED>PENDING", "PENDING>FRAUD_APPROVED", "FRAUD_APPROVED>STOCK_RESERVED", "STOCK_RESERVED>CONFIRMED"]);
  });

  /**
   * Places an order and applies `replies` to it, each once the one before is sent, while another
   * transaction that ran `hold` keeps the order's row; then commits that transaction.
   */
  const appliedWhileRowHeld = async (hold: string, replies: ReadonlyArray<(orderId: string) => Message>) => {
    const inFlight = new InFlightOrders();
    const orderId = await placedOrder(inFlight);
    const { db: counting, statements } = recordingPool(db.primary);
    const applier = new ReplyApplier(counting, timing, schema, inFlight);
    const other = await db.primary.connect();
    try {
      await other.query("BEGIN");
      await other.query(hold, [orderId]);
      const applied: Promise<null>[] = [];
      for (const reply of replies) {
        applied.push(applier.apply(reply(orderId)));
        await expect.poll(() => statements.length).toBe(applied.length);
      }
      await other.query("COMMIT");
      await Promise.all(applied);
    } finally {
      // Closed, not returned to the pool: should a poll fail, its transaction must not outlive the test.
      other.release(true);
    }
    return { orderId, statements, inFlight };
  };

  it("send a reply's write behind its order's write still under way, decided on what that write is to leave: each sent before the one before is answered, one write each", async () => {
    // The first write waits for the row in Postgres.
    const hold = "SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE";
    const { orderId, statements, inFlight } = await appliedWhileRowHeld(hold, [(id) => fraud(id, Decision.APPROVE), reserved, charged]);
    expect(statements).toHaveLength(3);
    expect((await orderRows([orderId])).get(orderId)).toMatchObject({ status: "CONFIRMED", version: "4", awaiting: [] });
    expect(await historyOf(orderId)).toEqual(["UNSPECIFIED>PENDING", "PENDING>FRAUD_APPROVED", "FRAUD_APPROVED>STOCK_RESERVED", "STOCK_RESERVED>CONFIRMED"]);
    expect((await outbox([orderId])).map((m) => m.subject)).toEqual(["fraud.cmd.assess", "inventory.cmd.reserve", "payment.cmd.charge", "order.evt.confirmed"]);
    expect(inFlight.get(orderId)).toBeUndefined();
  });

  it("decide a reply sent behind a write that failed again, on the order as it now stands", async () => {
    // The other transaction cancels the order.
    const cancel = "UPDATE orders SET status = 'CANCELLED', awaiting = '{}', version = version + 1, step_deadline = NULL WHERE order_id = $1";
    const { orderId, statements, inFlight } = await appliedWhileRowHeld(cancel, [(id) => fraud(id, Decision.APPROVE), reserved]);
    // Both writes fail their guards; each reply is read again and found late: nothing changes.
    expect(statements).toHaveLength(4);
    expect((await orderRows([orderId])).get(orderId)).toMatchObject({ status: "CANCELLED", version: "2", awaiting: [] });
    expect(await historyOf(orderId)).toEqual(["UNSPECIFIED>PENDING"]);
    expect((await outbox([orderId])).map((m) => m.subject)).toEqual(["fraud.cmd.assess", "inventory.cmd.reserve", "payment.cmd.charge"]);
    expect(inFlight.get(orderId)).toBeUndefined();
  });

  it("with the reservation after the fraud check (a rolling upgrade's setting), place orders as earlier versions did", async () => {
    const inFlight = new InFlightOrders();
    const { order } = await new OrderStore(db).create(
      { customerId: "c1", priced: { lines: [{ sku: "SKU-1", quantity: 1n, unitPriceMinor: 100n }], totalMinor: 100n, currency: "USD" }, idempotencyKey: undefined, requestHash: undefined },
      { ...sagaStart({ ...timing, reserveDuringFraudCheck: false, chargeDuringChecks: false }, inFlight), outboxSchema: schema },
    );
    expect(inFlight.get(order.orderId)).toMatchObject({ awaiting: ["fraud"] });
    expect((await outbox([order.orderId])).map((m) => m.subject)).toEqual(["fraud.cmd.assess"]);
    await new ReplyApplier(db.primary, timing, schema, inFlight).apply(fraud(order.orderId, Decision.APPROVE));
    expect((await orderRows([order.orderId])).get(order.orderId)).toMatchObject({ status: "FRAUD_APPROVED", awaiting: ["reserve"] });
    expect((await outbox([order.orderId])).map((m) => m.subject)).toEqual(["fraud.cmd.assess", "inventory.cmd.reserve"]);
  });

  it("never overwrite a change made elsewhere: the write fails and the reply is decided again on the order read", async () => {
    const a = await pendingOrder();
    const inFlight = new InFlightOrders();
    const applier = new ReplyApplier(db.primary, timing, schema, inFlight);
    await applier.apply(fraud(a, Decision.APPROVE));
    expect(inFlight.get(a)?.status).toBe(OrderStatus.FRAUD_APPROVED);
    // Cancelled by another replica: this one still remembers FRAUD_APPROVED.
    await db.primary.query("UPDATE orders SET status = 'CANCELLED', awaiting = '{}', version = version + 1, step_deadline = NULL WHERE order_id = $1", [a]);
    await applier.apply(reserved(a));
    expect((await orderRows([a])).get(a)).toMatchObject({ status: "CANCELLED", version: "3" });
    expect((await outbox([a])).map((m) => m.subject)).toEqual(["inventory.cmd.reserve"]);
    expect(inFlight.get(a)).toBeUndefined();
  });

  it("decide a reply again on the order read when it is ignored on the one remembered, which may have moved on elsewhere", async () => {
    const a = await pendingOrder();
    const inFlight = new InFlightOrders();
    const applier = new ReplyApplier(db.primary, timing, schema, inFlight);
    await applier.apply(fraud(a, Decision.APPROVE));
    // Another replica applied the reservation: the order awaits the charge, this replica still remembers it awaiting stock.
    await db.primary.query("UPDATE orders SET status = 'STOCK_RESERVED', awaiting = '{charge}', version = version + 1 WHERE order_id = $1", [a]);
    await applier.apply(charged(a));
    expect((await orderRows([a])).get(a)).toMatchObject({ status: "CONFIRMED", awaiting: [] });
  });

  it("keep only orders that await a reply, the newest ones beyond their capacity", () => {
    const inFlight = new InFlightOrders(2);
    const order = (orderId: string, awaiting: SagaOrder["awaiting"]): SagaOrder => sagaOrder({ orderId, awaiting });
    inFlight.remember(order("a", ["fraud"]));
    inFlight.remember(order("b", ["fraud"]));
    inFlight.remember(order("a", ["reserve"])); // written again: now the newest
    inFlight.remember(order("c", ["fraud"]));
    expect([inFlight.get("a")?.awaiting, inFlight.get("b"), inFlight.get("c")?.awaiting]).toEqual([["reserve"], undefined, ["fraud"]]);
    inFlight.remember(order("a", []));
    expect([inFlight.get("a"), inFlight.size]).toEqual([undefined, 1]);
  });
});

describe("the saga revision", () => {
  const waitingForLocks = async (): Promise<number | undefined> =>
    (await db.primary.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")).rows[0]?.n;

  it("worked out for the state a write is to leave is the one Postgres reads from the row it writes, through a compensation", async () => {
    const orderId = await placedOrder();
    let [order] = await readSagaOrders(db.primary, [orderId]);
    const replies: Reply[] = [{ kind: "reserved" }, { kind: "charged" }, { kind: "fraud", approved: false, reason: "blocked" }, { kind: "released" }, { kind: "refunded" }];
    const seen: string[] = [];
    for (const reply of replies) {
      const advance = planAdvance(order!, decide(order!, reply)!);
      const written = await writeTransitionsIfUnchanged(db.primary, { outboxSchema: schema, revisions: new Map([[orderId, order!.revision]]), transitions: advance.transitions, messages: [] }, timing.stepTimeoutMs);
      expect(written.get(orderId)).toBe(sagaRevisionOf(advance.order));
      order = { ...advance.order, revision: written.get(orderId)! };
      seen.push(order.revision);
    }
    // Through a compensation (awaiting the release and the refund, then REJECTED) and every shape of the revision.
    expect(seen).toEqual(["PENDING/1/fraud,charge", "PENDING/1/fraud", "PENDING/1/release,refund/REJECTED", "PENDING/1/refund/REJECTED", "REJECTED/2/"]);
  });

  it("guards a write by the row it locked: a write that waited for another's lock finds what that one committed, not the row as its statement began", async () => {
    const orderId = await pendingOrder();
    const [pending] = await readSagaOrders(db.primary, [orderId]);
    const approved = planAdvance(pending!, decide(pending!, { kind: "fraud", approved: true, reason: "" })!);
    const stockReserved = planAdvance(approved.order, decide(approved.order, { kind: "reserved" })!);
    const other = await db.primary.connect();
    let written: Map<string, string>;
    try {
      await other.query("BEGIN");
      await writeTransitionsIfUnchanged(other, { outboxSchema: schema, revisions: new Map([[orderId, pending!.revision]]), transitions: approved.transitions, messages: [] }, timing.stepTimeoutMs);
      // Decided on what the approval is to leave, sent on another connection while it is not committed.
      const writing = writeTransitionsIfUnchanged(db.primary, { outboxSchema: schema, revisions: new Map([[orderId, sagaRevisionOf(approved.order)]]), transitions: stockReserved.transitions, messages: [] }, timing.stepTimeoutMs);
      await expect.poll(waitingForLocks, { timeout: 5_000 }).toBe(1);
      await other.query("COMMIT");
      written = await writing;
    } finally {
      other.release();
    }
    expect(written.get(orderId)).toBe(sagaRevisionOf(stockReserved.order));
    expect((await orderRows([orderId])).get(orderId)).toMatchObject({ status: "STOCK_RESERVED", version: "3", awaiting: ["charge"] });
    expect(await historyOf(orderId)).toEqual(["PENDING>FRAUD_APPROVED", "FRAUD_APPROVED>STOCK_RESERVED"]);
  });
});
