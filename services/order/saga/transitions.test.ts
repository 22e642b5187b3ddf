import { randomBytes, randomUUID } from "node:crypto";
import { create, isMessage, type Message } from "@bufbuild/protobuf";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, FraudAssessedSchema } from "../../../gen/orderflow/fraud/v1/fraud_pb.js";
import { ReserveStockSchema, StockReservedSchema } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import type { OutgoingMessage } from "../../platform/bus/publish.js";
import { Database } from "../../platform/db.js";
import { createLogger } from "../../platform/logger.js";
import { migrate } from "../../platform/migrate.js";
import { handleReply } from "./orchestrator.js";
import { lockOrders, type SagaOrder } from "./state.js";
import { type Transition, writeTransitions } from "./transitions.js";

const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const schema = `order_transitions_${process.pid}_${randomBytes(3).toString("hex")}`;
const timing = { stepTimeoutMs: 30_000 };
let db: Database;

beforeAll(async () => {
  await migrate({ databaseUrl: DATABASE_URL, service: "order", schema, logger: createLogger("order-test", "warn"), busTables: true });
  db = new Database({ url: DATABASE_URL, poolMax: 4, schema, applicationName: "order-transitions-test" });
});

afterAll(async () => {
  if (!db) return;
  await db.primary.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  await db.close();
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

const fraud = (orderId: string, decision: Decision): Message => create(FraudAssessedSchema, { orderId, decision, reasons: decision === Decision.APPROVE ? [] : ["blocked"] });

describe("a batch of saga replies", () => {
  it("is written in one statement: last state per order, one version per status change, history in order, one notice per order", async () => {
    const [a, b] = [await pendingOrder(), await pendingOrder()];
    const notices: string[] = [];
    const listener = new pg.Client({ connectionString: DATABASE_URL });
    await listener.connect();
    listener.on("notification", (n) => notices.push(n.payload ?? ""));
    await listener.query("LISTEN order_changed");
    const emitted: OutgoingMessage[] = [];
    const transitions: Transition[] = [];
    try {
      await db.transaction(async (tx) => {
        const locked = new Map<string, SagaOrder>((await lockOrders(tx, [a, b])).map((o) => [o.orderId, o]));
        const batch = { out: { emit: (...m: OutgoingMessage[]) => void emitted.push(...m) }, transitions };
        // Order a: approved, then reserved (two changes of one order in one batch); order b: declined by fraud.
        await handleReply(tx, fraud(a, Decision.APPROVE), timing, batch, locked);
        await handleReply(tx, fraud(b, Decision.DECLINE), timing, batch, locked);
        await handleReply(tx, create(StockReservedSchema, { orderId: a }), timing, batch, locked);
        await handleReply(tx, create(StockReservedSchema, { orderId: a }), timing, batch, locked); // duplicate: no change
        expect(transitions.map((t) => `${t.fromStatus}>${t.status}`)).toEqual(["PENDING>FRAUD_APPROVED", "PENDING>REJECTED", "FRAUD_APPROVED>STOCK_RESERVED"]);
        await writeTransitions(tx, transitions, timing.stepTimeoutMs);
        expect(notices).toEqual([]); // delivered at commit
      });
      const { rows } = await db.primary.query<{ order_id: string; status: string; version: string; awaiting: string[]; deadline_set: boolean; concluded: boolean; status_reason: string }>(
        `SELECT order_id, status, version, awaiting, step_deadline IS NOT NULL AS deadline_set, concluded_at IS NOT NULL AS concluded, status_reason FROM orders WHERE order_id = ANY($1::uuid[])`,
        [[a, b]],
      );
      const byId = new Map(rows.map((r) => [r.order_id, r]));
      expect(byId.get(a)).toMatchObject({ status: "STOCK_RESERVED", version: "3", awaiting: ["charge"], deadline_set: true, concluded: false });
      expect(byId.get(b)).toMatchObject({ status: "REJECTED", version: "2", awaiting: [], deadline_set: false, concluded: true, status_reason: "fraud check declined: blocked" });
      const history = await db.primary.query<{ order_id: string; step: string }>(
        "SELECT order_id, from_status || '>' || to_status AS step FROM order_history WHERE order_id = ANY($1::uuid[]) ORDER BY id",
        [[a, b]],
      );
      expect(history.rows.filter((h) => h.order_id === a).map((h) => h.step)).toEqual(["PENDING>FRAUD_APPROVED", "FRAUD_APPROVED>STOCK_RESERVED"]);
      expect(history.rows.filter((h) => h.order_id === b).map((h) => h.step)).toEqual(["PENDING>REJECTED"]);
      expect(emitted.map((m) => m.subject)).toEqual(["inventory.cmd.reserve", "order.evt.rejected", "payment.cmd.charge"]);
      // The reservation asks for the order's lines, which came with the lock.
      const reserve = emitted[0]?.message;
      expect(reserve && isMessage(reserve, ReserveStockSchema) ? reserve.lines.map((l) => `${l.sku}×${l.quantity}`) : []).toEqual(["SKU-1×1", "SKU-2×2"]);
      await new Promise((r) => setTimeout(r, 100));
      expect(notices.sort()).toEqual([a, b].sort());
    } finally {
      await listener.end();
    }
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
});
