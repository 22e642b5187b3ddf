import { describe, expect, it } from "vitest";
import { Database, prepared, statementLabel } from "./db.js";

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
