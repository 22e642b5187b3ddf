import { v7 } from "uuid";
import { describe, expect, it } from "vitest";
import { useOrderSchema } from "../../test/support/order-schema.js";
import { createLogger } from "../platform/logger.js";
import { deleteConcludedOrders, startOrderRetention } from "./retention.js";

const { db: database } = useOrderSchema("retention");

const DAY_MS = 24 * 60 * 60 * 1000;

/** An order created `daysAgo` days ago (its id made then), with a line and its history; `awaitingStep`: a step still open. */
async function order(name: string, status: string, daysAgo: number, awaitingStep = false): Promise<[string, string]> {
  const createdAt = new Date(Date.now() - daysAgo * DAY_MS);
  const orderId = v7({ msecs: createdAt.getTime() });
  const pool = database().primary;
  await pool.query(
    `INSERT INTO orders (order_id, customer_id, status, total_minor, currency, created_at, awaiting, step_deadline)
     VALUES ($1, 'c1', $2, 500, 'USD', $3, CASE WHEN $4 THEN '{commit}' ELSE '{}' END::text[], CASE WHEN $4 THEN now() ELSE NULL END)`,
    [orderId, status, createdAt, awaitingStep],
  );
  await pool.query("INSERT INTO order_items (order_id, line_no, sku, quantity, unit_price_minor) VALUES ($1, 1, 'KB-001', 1, 500)", [orderId]);
  await pool.query("INSERT INTO order_history (order_id, from_status, to_status) VALUES ($1, 'UNSPECIFIED', 'PENDING'), ($1, 'PENDING', $2)", [orderId, status]);
  return [name, orderId];
}

async function left(): Promise<Record<string, string>> {
  const { rows } = await database().primary.query<{ order_id: string; items: number; history: number }>(
    `SELECT o.order_id, (SELECT count(*)::int FROM order_items i WHERE i.order_id = o.order_id) AS items,
            (SELECT count(*)::int FROM order_history h WHERE h.order_id = o.order_id) AS history FROM orders o`,
  );
  return Object.fromEntries(rows.map((r) => [r.order_id, `${r.items} line, ${r.history} changes`]));
}

describe("order retention", () => {
  it("deletes the concluded orders created before the cut, a chunk at a time, with their lines and history; keeps open and newer ones", async () => {
    const orders = Object.fromEntries([
      await order("old confirmed", "CONFIRMED", 40),
      await order("old rejected", "REJECTED", 35),
      await order("old cancelled", "CANCELLED", 31),
      await order("old confirmed, stock commit open", "CONFIRMED", 40, true),
      await order("old pending", "PENDING", 40, true),
      await order("recent confirmed", "CONFIRMED", 5),
    ]);
    const id = (name: string) => orders[name] ?? "";
    const cut = new Date(Date.now() - 30 * DAY_MS);
    // Chunks of 2: two statements for the three.
    expect(await deleteConcludedOrders(database(), cut, 2)).toBe(3);
    expect(await left()).toEqual({
      [id("old confirmed, stock commit open")]: "1 line, 2 changes",
      [id("old pending")]: "1 line, 2 changes",
      [id("recent confirmed")]: "1 line, 2 changes",
    });
    expect(await deleteConcludedOrders(database(), cut, 2)).toBe(0);
  });

  it("runs its first pass soon after start, on the replica that is active only, and none with 0 days", async () => {
    const [, orderId] = await order("old confirmed", "CONFIRMED", 3);
    const logger = createLogger("order-test", "error");
    const exists = async () => (await database().primary.query("SELECT 1 FROM orders WHERE order_id = $1", [orderId])).rowCount === 1;
    const idle = startOrderRetention({ db: database(), retentionDays: 2, firstAfterMs: 10, active: () => false, logger });
    const keeping = startOrderRetention({ db: database(), retentionDays: 0, firstAfterMs: 10, active: () => true, logger });
    await new Promise((resolve) => setTimeout(resolve, 300));
    idle();
    keeping();
    expect(await exists()).toBe(true);
    const leading = startOrderRetention({ db: database(), retentionDays: 2, firstAfterMs: 10, active: () => true, logger });
    try {
      for (let waited = 0; (await exists()) && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await exists()).toBe(false);
    } finally {
      leading();
    }
  });
});
