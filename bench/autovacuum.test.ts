import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dropDatabase, ensureDatabase, withDatabase } from "../tools/databases.js";
import { AutovacuumStandIn } from "./autovacuum.js";

const SERVER_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
// A database of its own: the stand-in analyzes every stale table of the database it is given.
const databaseUrl = withDatabase(SERVER_URL, `orderflow_autovacuum_test_${process.pid}`);
const TABLE = "public.grows";

let standIn: AutovacuumStandIn;

/** Runs `sql` on a connection of its own, which reports its table statistics as it closes. */
async function onOwnConnection<R extends pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/** analyzeStale until it names the table, or 5 s. */
async function analyzedWithin5s(): Promise<boolean> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    if ((await standIn.analyzeStale()).includes(TABLE)) return true;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return false;
}

beforeAll(async () => {
  await ensureDatabase(databaseUrl);
  await onOwnConnection(`CREATE TABLE ${TABLE} (n int)`);
  standIn = new AutovacuumStandIn(databaseUrl);
});
afterAll(async () => {
  await standIn?.close();
  await dropDatabase(databaseUrl);
});

describe("the autovacuum stand-in", () => {
  it("analyzes a table once it has changed past autovacuum's threshold, and only then", async () => {
    await onOwnConnection(`INSERT INTO ${TABLE} SELECT generate_series(1, 1000)`);
    expect(await analyzedWithin5s()).toBe(true);
    const [table] = await onOwnConnection<{ reltuples: number }>("SELECT reltuples FROM pg_class WHERE oid = $1::regclass", [TABLE]);
    expect(table?.reltuples).toBe(1000);
    // 60 more rows: below 50 + 10 % of 1,000, as autovacuum's defaults have it.
    await onOwnConnection(`INSERT INTO ${TABLE} SELECT generate_series(1, 60)`);
    expect(await standIn.analyzeStale()).not.toContain(TABLE);
    await onOwnConnection(`INSERT INTO ${TABLE} SELECT generate_series(1, 200)`);
    expect(await analyzedWithin5s()).toBe(true);
  });
});

describe("the autovacuum stand-in's pace", () => {
  it("analyzes at autovacuum's cost-based delay, not a manual ANALYZE's none", async () => {
    const [server] = await onOwnConnection<{ delay: string; limit: string; vacuumDelay: string; vacuumLimit: string }>(
      `SELECT current_setting('autovacuum_vacuum_cost_delay') AS delay, current_setting('autovacuum_vacuum_cost_limit') AS limit,
              current_setting('vacuum_cost_delay') AS "vacuumDelay", current_setting('vacuum_cost_limit') AS "vacuumLimit"`,
    );
    const pace = await standIn.analyzeAtAutovacuumsPace(TABLE);
    expect(pace).toEqual({
      costDelay: server?.delay === "-1" ? server.vacuumDelay : server?.delay,
      costLimit: Number(server?.limit === "-1" ? server.vacuumLimit : server?.limit),
    });
  });
});

describe("the autovacuum stand-in's visits", () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const analyzeCount = async () => (await onOwnConnection<{ n: string }>("SELECT analyze_count AS n FROM pg_stat_user_tables WHERE relid = $1::regclass", [TABLE]))[0]?.n;

  it("come once every naptime on one clock across the steps, not restarted by each step, and are reported", async () => {
    const visits = new AutovacuumStandIn(databaseUrl, 600);
    try {
      await onOwnConnection(`INSERT INTO ${TABLE} SELECT generate_series(1, 5000)`);
      const before = await analyzeCount();
      // A step shorter than the naptime: no visit is due yet.
      const clockStarted = Date.now();
      let stop = visits.analyzeWhileRunning();
      await sleep(300);
      expect(await stop()).toEqual([]);
      expect(await analyzeCount()).toBe(before);
      // The next step begins before the visit is due and runs past it: the visit comes in it.
      await sleep(100);
      stop = visits.analyzeWhileRunning();
      await sleep(500);
      const made = await stop();
      expect(Number(await analyzeCount())).toBeGreaterThan(Number(before));
      expect(made).toHaveLength(1);
      expect(made[0]?.tables).toContain(TABLE);
      expect(made[0]?.at).toBeGreaterThanOrEqual(clockStarted + 600);
      expect(made[0]?.durationMs).toBeGreaterThanOrEqual(0);
    } finally {
      await visits.close();
    }
  });
});
