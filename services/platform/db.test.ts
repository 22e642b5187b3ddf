import pg from "pg";
import { describe, expect, it } from "vitest";
import { Database, opaqueArrays, prepared, statementLabel } from "./db.js";

const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";

describe("Database.readFreshMany", () => {
  it("reads the replica, and the primary only for the keys the replica does not have yet", async () => {
    // Pools connect lazily: the query functions below decide what each pool "holds".
    const db = new Database({ url: "postgres://primary.invalid/db", readUrl: "postgres://replica.invalid/db", poolMax: 1, schema: "s", applicationName: "test" });
    const asked: Array<[string, readonly string[]]> = [];
    const holds = new Map<unknown, Map<string, string>>([
      [db.replica, new Map([["a", "a from the replica"]])],
      [db.primary, new Map([["a", "a from the primary"], ["b", "b from the primary"]])],
    ]);
    const found = await db.readFreshMany(["a", "b", "c"], async (pool, keys) => {
      asked.push([pool === db.replica ? "replica" : "primary", keys]);
      const held = holds.get(pool);
      return new Map(keys.filter((key) => held?.has(key)).map((key) => [key, held?.get(key) ?? ""]));
    });
    expect(found).toEqual(["a from the replica", "b from the primary", undefined]);
    expect(asked).toEqual([["replica", ["a", "b", "c"]], ["primary", ["b", "c"]]]);
    await db.close();
  });
});

describe("prepared statements' names", () => {
  it("say what the statement writes, or else reads, and stay one name per text", () => {
    const cases: Array<[string, string]> = [
      ["SELECT order_id FROM orders WHERE order_id = $1 FOR UPDATE", "select_orders"],
      ["SELECT balance_minor FROM wallets WHERE customer_id = $1 FOR NO KEY UPDATE", "select_wallets"],
      ["WITH locked AS MATERIALIZED (SELECT order_id FROM orders FOR UPDATE) UPDATE orders o SET status = 'X'", "update_orders"],
      ["INSERT INTO wallets (customer_id) VALUES ($1) ON CONFLICT (customer_id) DO UPDATE SET balance_minor = 0", "insert_wallets"],
      ["DELETE FROM payment.outbox WHERE id = ANY($1)", "delete_payment_outbox"],
      ["SELECT 1", "query"],
    ];
    for (const [text, label] of cases) {
      expect(statementLabel(text), text).toBe(label);
      const { name } = prepared(text, []);
      expect(name).toMatch(new RegExp(`^${label}_[0-9a-f]{16}$`));
      expect(prepared(text, []).name).toBe(name);
      expect(name!.length).toBeLessThanOrEqual(63); // Postgres's NAMEDATALEN
    }
    expect(prepared("SELECT a FROM orders", []).name).not.toBe(prepared("SELECT b FROM orders", []).name);
  });
});

describe("prepared statements' array parameters", () => {
  it("are read through a sub-select, and nothing else in the text changes", () => {
    expect(opaqueArrays("SELECT a FROM t WHERE k = ANY($1::uuid[]) AND n = $2 AND j = $3::json AND m IN (SELECT unnest($10::bigint[]))")).toBe(
      "SELECT a FROM t WHERE k = ANY((SELECT $1::uuid[])::uuid[]) AND n = $2 AND j = $3::json AND m IN (SELECT unnest((SELECT $10::bigint[])::bigint[]))",
    );
  });

  it("keep a batch statement of few keys on one plan, where its plain text is planned at every call", async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await client.query("CREATE TEMP TABLE keyed (k int PRIMARY KEY, v text)");
      await client.query("INSERT INTO keyed SELECT n, 'v' || n FROM generate_series(1, 1000) n");
      await client.query("ANALYZE keyed");
      const text = "SELECT k, v FROM keyed WHERE k = ANY($1::int[]) ORDER BY k";
      const plain = { name: "keyed_plain", text, values: [[7, 9]] };
      const batch = prepared(text, [[7, 9]]);
      for (let call = 0; call < 20; call++) {
        expect((await client.query(plain)).rows).toEqual([{ k: 7, v: "v7" }, { k: 9, v: "v9" }]);
        expect((await client.query(batch)).rows).toEqual([{ k: 7, v: "v7" }, { k: 9, v: "v9" }]);
      }
      const { rows } = await client.query<{ name: string; custom_plans: string; generic_plans: string }>(
        "SELECT name, custom_plans, generic_plans FROM pg_prepared_statements WHERE name = ANY($1) ORDER BY name = $2 DESC",
        [[plain.name, batch.name], plain.name],
      );
      expect(rows.map((r) => [Number(r.custom_plans), Number(r.generic_plans)])).toEqual([
        [20, 0],
        [5, 15],
      ]);
    } finally {
      await client.end();
    }
  });
});

describe("Database sessions", () => {
  it("never compile a statement with JIT, however costly its plan looks", async () => {
    const db = new Database({ url: DATABASE_URL, poolMax: 1, schema: "public", applicationName: "db-jit-test" });
    try {
      const client = await db.primary.connect();
      try {
        await client.query("BEGIN");
        // Every plan above the threshold: with JIT on (Postgres's default), this one would be compiled.
        await client.query("SET LOCAL jit_above_cost = 0");
        const { rows } = await client.query<{ "QUERY PLAN": Array<Record<string, unknown>> }>("EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(n) FROM generate_series(1, 10) AS n");
        await client.query("ROLLBACK");
        expect(rows[0]?.["QUERY PLAN"][0]).not.toHaveProperty("JIT");
        expect((await client.query<{ jit: string }>("SHOW jit")).rows[0]?.jit).toBe("off");
      } finally {
        client.release();
      }
    } finally {
      await db.close();
    }
  });
});
