import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { ensureBusTables, pruneInbox } from "./sql.js";
import { busTestEnv, type BusTestEnv } from "./testkit.js";

let env: BusTestEnv;
beforeAll(async () => {
  env = await busTestEnv([], inject("infra"));
});
afterAll(async () => {
  await env?.cleanup();
});

describe("bus tables", () => {
  it("DDL is idempotent, also when applied concurrently", async () => {
    await Promise.all([ensureBusTables(env.pool, env.schema), ensureBusTables(env.pool, env.schema), ensureBusTables(env.pool, env.schema)]);
    const r = await env.pool.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", [env.schema]);
    expect(r.rows.map((x) => x.table_name)).toEqual(["inbox", "outbox"]);
  });

  it("rejects schema names that are not plain identifiers", async () => {
    await expect(ensureBusTables(env.pool, 'x"; DROP TABLE y; --')).rejects.toThrow(/invalid schema name/);
  });

  it("prunes old inbox rows of one consumer, in chunks", async () => {
    await env.pool.query(
      `INSERT INTO "${env.schema}".inbox (consumer, message_id, processed_at)
       SELECT c, c || '-' || g, now() - make_interval(hours => CASE WHEN g <= 25 THEN 48 ELSE 0 END)
         FROM generate_series(1, 30) g, unnest(ARRAY['a', 'b']) c`,
    );
    expect(await pruneInbox(env.pool, env.schema, "a", 24 * 3600_000, 10)).toBe(25);
    const left = await env.pool.query<{ consumer: string; n: number }>(`SELECT consumer, count(*)::int AS n FROM "${env.schema}".inbox GROUP BY 1 ORDER BY 1`);
    expect(left.rows).toEqual([
      { consumer: "a", n: 5 },
      { consumer: "b", n: 30 },
    ]);
  });

  it("leaves the inbox alone while another replica is pruning it", async () => {
    await env.pool.query(`INSERT INTO "${env.schema}".inbox (consumer, message_id, processed_at) VALUES ('c', 'c-1', now() - interval '2 days')`);
    const other = await env.pool.connect();
    try {
      await other.query("BEGIN");
      await other.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`orderflow.inbox.prune.${env.schema}.c`]);
      expect(await pruneInbox(env.pool, env.schema, "c", 3600_000)).toBe(0);
      await other.query("COMMIT");
    } finally {
      other.release();
    }
    expect(await pruneInbox(env.pool, env.schema, "c", 3600_000)).toBe(1);
  });
});
