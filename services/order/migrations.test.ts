import { join } from "node:path";
import { runner } from "node-pg-migrate";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { projectRoot } from "../platform/migrate.js";

const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const schema = `order_migrations_test_${process.pid}`;
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1, options: `-c search_path="${schema}"` });
const dir = join(projectRoot(), "services", "order", "migrations");

const migrateOrders = (direction: "up" | "down", count: number): Promise<unknown> =>
  runner({ databaseUrl: DATABASE_URL, dir, schema, createSchema: true, migrationsTable: "schema_migrations", direction, count, noLock: true, log: () => undefined });

afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
});

const steps = [
  { from: "UNSPECIFIED", to: "PENDING", reason: "order placed", at: "2026-01-02T03:04:05.123456+00:00" },
  { from: "PENDING", to: "FRAUD_APPROVED", reason: "fraud check passed", at: "2026-01-02T03:04:05.234567+00:00" },
  { from: "FRAUD_APPROVED", to: "REJECTED", reason: "insufficient funds", at: "2026-01-02T03:04:06+00:00" },
];

type Entry = { from: string; to: string; reason: string; at: string };

async function historyOf(orderId: string): Promise<Entry[]> {
  const { rows } = await pool.query<{ history: Entry[] }>("SELECT history FROM orders WHERE order_id = $1", [orderId]);
  return rows[0]?.history ?? [];
}

const comparable = (entries: readonly Entry[]) => entries.map((e) => ({ ...e, at: new Date(e.at).getTime() }));

describe("the order history's move into the order row (migration 7)", () => {
  const [withHistory, without, placedByOldReplica] = ["0190a000-0000-7000-8000-000000000001", "0190a000-0000-7000-8000-000000000002", "0190a000-0000-7000-8000-000000000003"];

  it("carries every entry, in order and to the microsecond, into orders.history", async () => {
    await migrateOrders("up", 7);
    for (const orderId of [withHistory, without]) {
      await pool.query("INSERT INTO orders (order_id, customer_id, status, total_minor, currency) VALUES ($1, 'c', 'REJECTED', 100, 'USD')", [orderId]);
    }
    for (const step of steps) {
      await pool.query("INSERT INTO order_history (order_id, from_status, to_status, reason, at) VALUES ($1, $2, $3, $4, $5)", [withHistory, step.from, step.to, step.reason, step.at]);
    }

    await migrateOrders("up", 1);
    const moved = await historyOf(withHistory);
    expect(comparable(moved)).toEqual(comparable(steps));
    expect(moved[0]!.at).toContain(".123456");
    expect(moved[1]!.at).toContain(".234567");
    expect(await historyOf(without)).toEqual([]);
  });

  it("appends what order replicas of the earlier version write to order_history during a rollout", async () => {
    // The earlier version's CreateOrder: the order and its first entry in one statement.
    await pool.query(`WITH o AS (INSERT INTO orders (order_id, customer_id, status, total_minor, currency) VALUES ($1, 'c', 'PENDING', 100, 'USD') RETURNING order_id),
                           h AS (INSERT INTO order_history (order_id, from_status, to_status, reason) SELECT order_id, 'UNSPECIFIED', 'PENDING', 'order placed' FROM o RETURNING at)
                      SELECT at FROM h`, [placedByOldReplica]);
    // Its transition write: the row updated and two entries inserted by one statement.
    await pool.query(`WITH updated AS (UPDATE orders SET status = 'STOCK_RESERVED', version = version + 2 WHERE order_id = $1 RETURNING order_id),
                           history AS (INSERT INTO order_history (order_id, from_status, to_status, reason)
                                       SELECT h.order_id, h.from_status, h.to_status, h.reason
                                         FROM unnest(ARRAY[$1, $1]::uuid[], ARRAY['PENDING', 'FRAUD_APPROVED'], ARRAY['FRAUD_APPROVED', 'STOCK_RESERVED'], ARRAY['fraud check passed', 'stock reserved'])
                                              WITH ORDINALITY AS h(order_id, from_status, to_status, reason, n)
                                        WHERE h.order_id IN (SELECT order_id FROM updated) ORDER BY h.n)
                      SELECT count(*) FROM updated`, [placedByOldReplica]);
    const history = await historyOf(placedByOldReplica);
    expect(history.map((e) => `${e.from}>${e.to}:${e.reason}`)).toEqual(["UNSPECIFIED>PENDING:order placed", "PENDING>FRAUD_APPROVED:fraud check passed", "FRAUD_APPROVED>STOCK_RESERVED:stock reserved"]);
    expect(history.every((e) => Number.isFinite(new Date(e.at).getTime()))).toBe(true);
  });

  it("gives order_history back every order's entries when undone", async () => {
    const before = new Map<string, Entry[]>();
    for (const orderId of [withHistory, without, placedByOldReplica]) before.set(orderId, await historyOf(orderId));
    await migrateOrders("down", 1);
    const { rows } = await pool.query<{ order_id: string; from_status: string; to_status: string; reason: string; at: string }>(
      "SELECT order_id::text, from_status, to_status, reason, to_json(at) #>> '{}' AS at FROM order_history ORDER BY order_id, id",
    );
    const restored = rows.map((r) => ({ orderId: r.order_id, from: r.from_status, to: r.to_status, reason: r.reason, at: new Date(r.at).getTime() }));
    expect(restored).toEqual([...before].flatMap(([orderId, entries]) => comparable(entries).map((e) => ({ orderId, ...e }))));
    const column = await pool.query("SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'orders' AND column_name = 'history'", [schema]);
    expect(column.rowCount).toBe(0);
  });
});
