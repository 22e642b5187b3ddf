import { describe, expect, it } from "vitest";
import { Database } from "./db.js";

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
