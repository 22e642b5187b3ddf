import { performance } from "node:perf_hooks";
import pg from "pg";
import { surviveDroppedConnections } from "../services/platform/db.js";
import { sleep } from "./log.js";

/** Postgres's clock now (ISO): the clock of the orders' and history's times. */
export async function databaseNow(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ now: string }>("SELECT to_json(clock_timestamp()) #>> '{}' AS now");
  return rows[0]?.now ?? new Date().toISOString();
}

/** Runs `use` on a one-connection pool to the run's database, closed afterwards. */
export async function onDatabase<T>(databaseUrl: string, use: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = surviveDroppedConnections(new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: "orderflow-bench" }));
  try {
    return await use(pool);
  } finally {
    await pool.end();
  }
}

/** Server pids of the services' connections to the run's database (the bench's own, named orderflow-bench…, left out). */
export function serviceConnectionPids(databaseUrl: string): Promise<number[]> {
  return onDatabase(databaseUrl, async (pool) => {
    const { rows } = await pool.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND NOT starts_with(application_name, 'orderflow-bench')",
    );
    return rows.map((row) => row.pid);
  });
}

/** Whether the server runs autovacuum. */
export function autovacuumIsOn(databaseUrl: string): Promise<boolean> {
  return onDatabase(databaseUrl, async (pool) => (await pool.query<{ autovacuum: string }>("SHOW autovacuum")).rows[0]?.autovacuum === "on");
}

/** Waits until no order is still in flight (a saturated step leaves work behind); returns how many still are. */
export function waitForQuiet(databaseUrl: string, customerPrefix: string, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  return onDatabase(databaseUrl, async (pool) => {
    for (;;) {
      const open = Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM orders.orders WHERE concluded_at IS NULL AND starts_with(customer_id, $1)", [customerPrefix])).rows[0]?.n ?? 0);
      if (open === 0 || performance.now() > deadline) return open;
      await sleep(250);
    }
  });
}

/** The newest confirmed orders of the run's customers, up to `limit`. */
export function concludedOrderIds(databaseUrl: string, customerPrefix: string, limit: number): Promise<string[]> {
  return onDatabase(databaseUrl, async (pool) => {
    const result = await pool.query<{ id: string }>(
      "SELECT order_id::text AS id FROM orders.orders WHERE status = 'CONFIRMED' AND concluded_at IS NOT NULL AND starts_with(customer_id, $2) ORDER BY seq DESC LIMIT $1",
      [limit, customerPrefix],
    );
    return result.rows.map((row) => row.id);
  });
}
