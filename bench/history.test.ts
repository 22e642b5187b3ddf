import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { surviveDroppedConnections } from "../services/platform/db.js";
import { createLogger } from "../services/platform/logger.js";
import { migrate } from "../services/platform/migrate.js";
import { dropDatabase, ensureDatabase, withDatabase } from "../tools/databases.js";
import { seedHistory } from "./history.js";

const SERVER_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const databaseUrl = withDatabase(SERVER_URL, `orderflow_history_test_${process.pid}`);
const customers = ["hist-a", "hist-b", "hist-c"];
const skus = ["HIST-1", "HIST-2", "HIST-3", "HIST-4"];
let pool: pg.Pool;

async function count(sql: string): Promise<number> {
  return Number((await pool.query<{ n: string }>(sql)).rows[0]?.n);
}

beforeAll(async () => {
  await ensureDatabase(databaseUrl);
  const logger = createLogger("history-test", "error");
  // The schemas as the bench's services name them.
  for (const [service, schema] of [["order", "orders"], ["inventory", "inventory"], ["payment", "payment"], ["notification", "notification"]] as const) {
    await migrate({ databaseUrl, service, schema, logger, busTables: service === "order" });
  }
  // pool.end() resolves before its connections have closed: the DROP DATABASE … WITH (FORCE)
  // that follows may end one first, which would raise on a client nobody listens to any more.
  pool = surviveDroppedConnections(new pg.Pool({ connectionString: databaseUrl, max: 2 }));
  await pool.query("INSERT INTO inventory.products (sku, name, price_minor, currency, available) SELECT unnest($1::text[]), 'history test', 100, 'USD', 1000", [skus]);
  await pool.query("INSERT INTO payment.wallets (customer_id, balance_minor, currency) SELECT unnest($1::text[]), 0, 'USD'", [customers]);
}, 60_000);

afterAll(async () => {
  await pool?.end();
  await dropDatabase(databaseUrl);
});

describe("seedHistory", () => {
  it("writes concluded orders as a confirmed saga leaves them in every service, older than now and in id order", { timeout: 60_000 }, async () => {
    const progress: number[] = [];
    await seedHistory(databaseUrl, 300, customers, skus, (written) => progress.push(written));
    expect(progress).toEqual([300]);

    expect(await count("SELECT count(*) AS n FROM orders.orders WHERE status = 'CONFIRMED' AND concluded_at IS NOT NULL AND NOT in_flight AND stock_reserved AND charged")).toBe(300);
    expect(await count("SELECT count(DISTINCT customer_id) AS n FROM orders.orders")).toBe(customers.length);
    // Each order's total is what its items add up to, its four transitions end in CONFIRMED.
    expect(await count(`SELECT count(*) AS n FROM orders.orders o
                         WHERE total_minor = (SELECT sum(quantity * unit_price_minor) FROM orders.order_items i WHERE i.order_id = o.order_id)
                           AND (SELECT array_agg(to_status ORDER BY id) FROM orders.order_history h WHERE h.order_id = o.order_id)
                               = ARRAY['PENDING', 'FRAUD_APPROVED', 'STOCK_RESERVED', 'CONFIRMED']`)).toBe(300);
    expect(await count("SELECT count(*) AS n FROM orders.order_items WHERE line_no = 2")).toBeGreaterThan(50);
    // The other services hold the same orders: stock committed line for line, one charge of the total, one notification.
    expect(await count(`SELECT count(*) AS n FROM orders.orders o JOIN inventory.reservations r USING (order_id)
                         WHERE r.status = 'COMMITTED'
                           AND (SELECT array_agg(sku || quantity ORDER BY sku) FROM inventory.reservation_lines l WHERE l.order_id = o.order_id)
                               = (SELECT array_agg(sku || quantity ORDER BY sku) FROM orders.order_items i WHERE i.order_id = o.order_id)`)).toBe(300);
    expect(await count(`SELECT count(*) AS n FROM orders.orders o
                          JOIN payment.payments p ON p.order_id = o.order_id::text AND p.status = 'CHARGED' AND p.amount_minor = o.total_minor
                          JOIN payment.ledger_entries e ON e.payment_id = p.payment_id AND e.kind = 'CHARGE' AND e.amount_minor = -o.total_minor`)).toBe(300);
    expect(await count("SELECT count(*) AS n FROM orders.orders o JOIN notification.notifications n ON n.order_id = o.order_id::text AND n.kind = 'order_confirmed'")).toBe(300);

    // UUIDv7 ids of the past, whose order is the orders' (seq), so a new order's id sorts after them.
    const ids = await pool.query<{ ms: string; created: string; now: string }>(
      `SELECT ('x' || lpad(replace(left(order_id::text, 13), '-', ''), 16, '0'))::bit(64)::bigint AS ms,
              (extract(epoch FROM created_at) * 1000)::bigint AS created, (extract(epoch FROM now()) * 1000)::bigint AS now
         FROM orders.orders ORDER BY seq`,
    );
    const ms = ids.rows.map((r) => Number(r.ms));
    expect(ms).toEqual([...ms].sort((a, b) => a - b));
    expect(ids.rows.every((r) => Math.abs(Number(r.ms) - Number(r.created)) <= 1 && Number(r.ms) <= Number(r.now))).toBe(true);
    expect(Number(ids.rows[0]?.now) - ms[0]!).toBeGreaterThan(29 * 24 * 3_600_000);
    expect(await count("SELECT count(*) AS n FROM orders.orders WHERE substr(order_id::text, 15, 1) <> '7'")).toBe(0);
  });
});
