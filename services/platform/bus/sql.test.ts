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

  it("drops the primary key of an outbox made by an earlier version, and keeps its rows and the index of unpublished ones", async () => {
    const schema = `${env.schema}_old`;
    await env.pool.query(`CREATE SCHEMA "${schema}"`);
    try {
      await env.pool.query(`CREATE TABLE "${schema}".outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, msg_id text NOT NULL DEFAULT gen_random_uuid()::text,
        subject text NOT NULL, type text NOT NULL, payload bytea NOT NULL, headers jsonb NOT NULL DEFAULT '{}'::jsonb,
        key text, created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz)`);
      await env.pool.query(`INSERT INTO "${schema}".outbox (subject, type, payload) VALUES ('a.b', 't', '\\x00')`);
      await Promise.all([ensureBusTables(env.pool, schema), ensureBusTables(env.pool, schema)]);
      const indexes = await env.pool.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'outbox' ORDER BY 1", [schema]);
      expect(indexes.rows.map((r) => r.indexname)).toEqual(["outbox_published_at_idx", "outbox_unpublished_idx"]);
      expect((await env.pool.query(`SELECT subject FROM "${schema}".outbox`)).rows).toEqual([{ subject: "a.b" }]);
    } finally {
      await env.pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    }
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
