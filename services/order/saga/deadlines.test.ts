import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, FraudAssessedSchema } from "../../../gen/orderflow/fraud/v1/fraud_pb.js";
import { ReleaseStockSchema } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { testDatabasePrefix } from "../../../test/support/names.js";
import { dropDatabase, ensureDatabase, withDatabase } from "../../../tools/databases.js";
import { enqueueOutbox } from "../../platform/bus/index.js";
import { recordingPool } from "../../platform/bus/testkit.js";
import { Database } from "../../platform/db.js";
import { createLogger } from "../../platform/logger.js";
import { migrate } from "../../platform/migrate.js";
import type { Step } from "./commands.js";
import { cancelOrder } from "./cancel.js";
import { DeadlineWatcher, queuedInAny, queuedInOutbox } from "./deadlines.js";
import { InFlightOrders } from "./in-flight.js";
import { ReplyApplier } from "./replies.js";
import { ordersSchema, readSagaOrders } from "./state.js";

// A database of its own: the sweep writes to the outbox of the "orders" schema by name.
const databaseUrl = withDatabase(process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres", `${testDatabasePrefix}${process.pid}_deadlines_${Date.now() % 100_000}`);
const logger = createLogger("order-test", "error");
let db: Database | undefined;

beforeAll(async () => {
  await ensureDatabase(databaseUrl);
  await migrate({ databaseUrl, service: "order", schema: ordersSchema, logger, busTables: true });
  db = new Database({ url: databaseUrl, poolMax: 2, backgroundPoolMax: 2, schema: ordersSchema, applicationName: "order-deadlines-test" });
});

afterAll(async () => {
  await db?.close();
  await dropDatabase(databaseUrl);
});

function database(): Database {
  if (!db) throw new Error("not set up");
  return db;
}

/** An order awaiting the fraud check, its deadline `dueInSeconds` from now (null: a concluded order, no step open). */
async function orderAwaitingFraud(dueInSeconds: number | null): Promise<string> {
  const orderId = randomUUID();
  await database().primary.query(
    `INSERT INTO orders (order_id, customer_id, status, total_minor, currency, awaiting, step_deadline)
     VALUES ($1, 'c1', CASE WHEN $2::float8 IS NULL THEN 'CONFIRMED' ELSE 'PENDING' END, 500, 'USD', CASE WHEN $2::float8 IS NULL THEN '{}' ELSE '{fraud}' END::text[], now() + make_interval(secs => $2::float8))`,
    [orderId, dueInSeconds],
  );
  return orderId;
}

async function state(orderId: string) {
  const { rows } = await database().primary.query<{ status: string; status_reason: string; step_attempts: number; due_in_s: number | null; in_flight: boolean }>(
    "SELECT status, status_reason, step_attempts, extract(epoch FROM step_deadline - now())::float8 AS due_in_s, in_flight FROM orders WHERE order_id = $1",
    [orderId],
  );
  return rows[0];
}

async function commandsFor(orderId: string): Promise<string[]> {
  const { rows } = await database().primary.query<{ subject: string }>("SELECT subject FROM outbox WHERE key = $1 ORDER BY id", [orderId]);
  return rows.map((r) => r.subject);
}

const overdue = (orderId: string) => database().primary.query("UPDATE orders SET step_deadline = now() - interval '1 s' WHERE order_id = $1", [orderId]);

describe("the deadline sweep", () => {
  it("re-sends an overdue step with a longer deadline, leaves the others, and fails the order after the last attempt", async () => {
    const late = await orderAwaitingFraud(-1);
    const onTime = await orderAwaitingFraud(60);
    const settled = await orderAwaitingFraud(null);
    const watcher = new DeadlineWatcher(database(), { stepTimeoutMs: 1_000, maxAttempts: 2 }, logger);

    expect(await watcher.sweep()).toBe(1);
    expect(await commandsFor(late)).toEqual(["fraud.cmd.assess"]);
    const resent = await state(late);
    expect(resent).toMatchObject({ status: "PENDING", step_attempts: 2, in_flight: true });
    // Back-off: the second attempt gets 2 × the step timeout (1 s without it).
    expect(resent?.due_in_s).toBeGreaterThan(1);
    expect(resent?.due_in_s).toBeLessThanOrEqual(2);
    expect(await commandsFor(onTime)).toEqual([]);
    expect(await state(onTime)).toMatchObject({ step_attempts: 1, in_flight: true });
    expect(await state(settled)).toMatchObject({ in_flight: false, due_in_s: null });

    await overdue(late);
    expect(await watcher.sweep()).toBe(1);
    expect(await state(late)).toMatchObject({ status: "REJECTED", status_reason: "fraud check timed out", in_flight: false, due_in_s: null });
    expect(await commandsFor(late)).toEqual(["fraud.cmd.assess", "order.evt.rejected"]);
    expect(await watcher.sweep()).toBe(0);
  });

  it("re-sends both first steps together, and a fraud check that runs out of attempts releases the stock before the order is REJECTED", async () => {
    const orderId = randomUUID();
    await database().primary.query(
      `INSERT INTO orders (order_id, customer_id, status, total_minor, currency, awaiting, step_deadline)
       VALUES ($1, 'c1', 'PENDING', 500, 'USD', '{fraud,reserve}', now() - interval '1 s')`,
      [orderId],
    );
    const watcher = new DeadlineWatcher(database(), { stepTimeoutMs: 1_000, maxAttempts: 2 }, logger);
    expect(await watcher.sweep()).toBe(1);
    expect(await commandsFor(orderId)).toEqual(["fraud.cmd.assess", "inventory.cmd.reserve"]);
    await overdue(orderId);
    expect(await watcher.sweep()).toBe(1);
    expect(await state(orderId)).toMatchObject({ status: "PENDING", status_reason: "fraud check timed out", in_flight: true });
    expect(await commandsFor(orderId)).toEqual(["fraud.cmd.assess", "inventory.cmd.reserve", "inventory.cmd.release"]);
    const [order] = await readSagaOrders(database().primary, [orderId]);
    expect(order).toMatchObject({ awaiting: ["release"], compensateTo: OrderStatus.REJECTED });
  });

  it("leaves a fraud-approved order whose reservation ran out of attempts being rejected: cancelling it is refused", async () => {
    const orderId = randomUUID();
    await database().primary.query(
      `INSERT INTO orders (order_id, customer_id, status, total_minor, currency, awaiting, step_attempts, step_deadline)
       VALUES ($1, 'c1', 'FRAUD_APPROVED', 500, 'USD', '{reserve}', 2, now() - interval '1 s')`,
      [orderId],
    );
    const watcher = new DeadlineWatcher(database(), { stepTimeoutMs: 1_000, maxAttempts: 2 }, logger);
    expect(await watcher.sweep()).toBe(1);
    expect(await state(orderId)).toMatchObject({ status: "FRAUD_APPROVED", status_reason: "stock reservation timed out" });
    const cancelling = database().transaction((tx) => cancelOrder(tx, orderId, "changed my mind", { stepTimeoutMs: 1_000 }));
    await expect(cancelling).rejects.toMatchObject({ code: Code.FailedPrecondition });
    const [order] = await readSagaOrders(database().primary, [orderId]);
    expect(order).toMatchObject({ status: OrderStatus.FRAUD_APPROVED, awaiting: ["release"], compensateTo: OrderStatus.REJECTED, reason: "stock reservation timed out" });
    expect(await commandsFor(orderId)).toEqual(["inventory.cmd.release"]);
  });

  it("gives a step whose messages are still queued another step timeout, without a re-send or an attempt, until the defer limit", async () => {
    const queued = await orderAwaitingFraud(-1);
    const everythingQueued = { queued: async (steps: ReadonlySet<Step>) => steps, deferLimitMs: 60_000 };
    const watcher = new DeadlineWatcher(database(), { stepTimeoutMs: 1_000, maxAttempts: 2, ...everythingQueued }, logger);
    expect(await watcher.sweep()).toBe(1);
    expect(await commandsFor(queued)).toEqual([]);
    const deferred = await state(queued);
    expect(deferred).toMatchObject({ status: "PENDING", step_attempts: 1, in_flight: true });
    expect(deferred?.due_in_s).toBeGreaterThan(0.5);
    expect(deferred?.due_in_s).toBeLessThanOrEqual(1);

    // Past the limit the step is re-sent and counted, queued or not.
    await database().primary.query("UPDATE orders SET step_started_at = now() - interval '61 s', step_deadline = now() - interval '1 s' WHERE order_id = $1", [queued]);
    expect(await watcher.sweep()).toBe(1);
    expect(await commandsFor(queued)).toEqual(["fraud.cmd.assess"]);
    expect(await state(queued)).toMatchObject({ step_attempts: 2 });

    // A probe that fails is no reason to hold a step back.
    const failing = new DeadlineWatcher(database(), { stepTimeoutMs: 1_000, maxAttempts: 3, queued: () => Promise.reject(new Error("NATS unreachable")) }, logger);
    const other = await orderAwaitingFraud(-1);
    expect(await failing.sweep()).toBe(1);
    expect(await commandsFor(other)).toEqual(["fraud.cmd.assess"]);
  });

  it("counts a step queued while a command to its participant waits in the outbox unpublished (a full stream refusing it)", async () => {
    const published = () => database().primary.query("UPDATE outbox SET published_at = now() WHERE published_at IS NULL");
    const every = new Set<Step>(["fraud", "reserve", "charge", "release", "refund"]);
    const queued = queuedInOutbox(database());
    await published();
    expect(await queued(every)).toEqual(new Set());
    const client = await database().primary.connect();
    try {
      await enqueueOutbox(client, ordersSchema, [
        { subject: "inventory.cmd.release", message: create(ReleaseStockSchema, { orderId: "o1" }), key: "o1", id: "release-o1" },
        { subject: "order.evt.confirmed", message: create(ReleaseStockSchema, { orderId: "o2" }), key: "o2", id: "confirmed-o2" },
      ]);
    } finally {
      client.release();
    }
    expect(await queued(every)).toEqual(new Set(["reserve", "release"]));
    expect(await queued(new Set<Step>(["fraud", "charge"]))).toEqual(new Set());
    // With the bus's answer: either tells.
    const both = queuedInAny(queued, async (steps) => new Set([...steps].filter((step) => step === "charge")));
    expect(await both(every)).toEqual(new Set(["reserve", "release", "charge"]));
    await published();
    expect(await queued(every)).toEqual(new Set());
  });

  it("asks whether steps are queued before it locks the overdue orders, so a slow answer holds no reply back", async () => {
    const late = await orderAwaitingFraud(-1);
    let answer!: () => void;
    let asked!: () => void;
    const probing = new Promise<void>((resolve) => (asked = resolve));
    const slowProbe = async (steps: ReadonlySet<Step>): Promise<ReadonlySet<Step>> => {
      asked();
      await new Promise<void>((resolve) => (answer = resolve));
      return steps;
    };
    const watcher = new DeadlineWatcher(database(), { stepTimeoutMs: 1_000, maxAttempts: 3, queued: slowProbe, deferLimitMs: 60_000 }, logger);
    const sweeping = watcher.sweep();
    await probing;
    // What the reply applier does meanwhile: lock the order, here without waiting.
    const client = await database().primary.connect();
    try {
      await client.query("BEGIN");
      const { rowCount } = await client.query("SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE NOWAIT", [late]);
      expect(rowCount).toBe(1);
      await client.query("COMMIT");
    } finally {
      client.release();
    }
    answer();
    expect(await sweeping).toBeGreaterThanOrEqual(1);
    expect(await commandsFor(late)).toEqual([]);
    expect(await state(late)).toMatchObject({ step_attempts: 1, in_flight: true });
  });

  it("leaves the orders the reply applier remembers current when it defers or re-sends their step: their replies are written without a read", async () => {
    const [deferred, resent] = [await orderAwaitingFraud(-1), await orderAwaitingFraud(-1)];
    await database().primary.query("UPDATE orders SET step_started_at = now() - interval '61 s' WHERE order_id = $1", [resent]);
    const inFlight = new InFlightOrders();
    for (const order of await readSagaOrders(database().primary, [deferred, resent])) inFlight.remember(order);
    const watcher = new DeadlineWatcher(database(), { stepTimeoutMs: 1_000, maxAttempts: 3, queued: async (steps) => steps, deferLimitMs: 60_000 }, logger);
    expect(await watcher.sweep()).toBe(2);
    expect([await commandsFor(deferred), await commandsFor(resent)]).toEqual([[], ["fraud.cmd.assess"]]);

    const { db: counting, statements } = recordingPool(database().primary);
    const applier = new ReplyApplier(counting, { stepTimeoutMs: 1_000 }, ordersSchema, inFlight);
    await Promise.all([deferred, resent].map((orderId) => applier.apply(create(FraudAssessedSchema, { orderId, decision: Decision.APPROVE }))));
    expect(statements).toHaveLength(1); // one guarded write for both, no read, nothing decided again
    expect([await state(deferred), await state(resent)]).toMatchObject([{ status: "FRAUD_APPROVED", step_attempts: 1 }, { status: "FRAUD_APPROVED", step_attempts: 1 }]);
  });

  it("handles a sweep's orders together, each re-sent with its own back-off or deferred", async () => {
    // Orders of the tests before are not due within this one.
    await database().primary.query("UPDATE orders SET step_deadline = now() + interval '1 hour' WHERE in_flight");
    const [first, third, queued] = [await orderAwaitingFraud(-1), await orderAwaitingFraud(-1), await orderAwaitingFraud(-1)];
    // Started before the defer limit: re-sent although their step is queued.
    await database().primary.query("UPDATE orders SET step_started_at = now() - interval '61 s' WHERE order_id = ANY($1::uuid[])", [[first, third]]);
    await database().primary.query("UPDATE orders SET step_attempts = 3 WHERE order_id = $1", [third]);
    const watcher = new DeadlineWatcher(database(), { stepTimeoutMs: 1_000, maxAttempts: 5, queued: async (steps) => steps, deferLimitMs: 60_000 }, logger);

    expect(await watcher.sweep()).toBe(3);
    const [a, b, c] = [await state(first), await state(third), await state(queued)];
    expect(a).toMatchObject({ status: "PENDING", step_attempts: 2 });
    expect(a?.due_in_s).toBeGreaterThan(1);
    expect(a?.due_in_s).toBeLessThanOrEqual(2);
    expect(b).toMatchObject({ status: "PENDING", step_attempts: 4 });
    expect(b?.due_in_s).toBeGreaterThan(4);
    expect(b?.due_in_s).toBeLessThanOrEqual(8);
    expect(c).toMatchObject({ status: "PENDING", step_attempts: 1 });
    expect(c?.due_in_s).toBeGreaterThan(0.5);
    expect(c?.due_in_s).toBeLessThanOrEqual(1);
    expect([await commandsFor(first), await commandsFor(third), await commandsFor(queued)]).toEqual([["fraud.cmd.assess"], ["fraud.cmd.assess"], []]);
  });
});
