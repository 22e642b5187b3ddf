import { randomBytes } from "node:crypto";
import { type Client, Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { DATABASE_URL } from "../platform/bus/testkit.js";
import { Database } from "../platform/db.js";
import { createLogger } from "../platform/logger.js";
import { migrate } from "../platform/migrate.js";
import { inventoryApi } from "./api.js";
import { ProductStore } from "./store.js";

const schema = `inventory_api_test_${process.pid}_${randomBytes(3).toString("hex")}`;
let db: Database;
let api: Client<typeof InventoryService>;

beforeAll(async () => {
  await migrate({ databaseUrl: DATABASE_URL, service: "inventory", schema, logger: createLogger("inventory-test", "warn") });
  db = new Database({ url: DATABASE_URL, poolMax: 8, schema, applicationName: "inventory-api-test" });
  api = createClient(InventoryService, createRouterTransport(({ service }) => service(InventoryService, inventoryApi(new ProductStore(db)))));
});

afterAll(async () => {
  if (!db) return;
  await db.primary.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  await db.close();
});

/** A product of its own with `available` units. */
async function product(available: number): Promise<string> {
  const sku = `SKU-${randomBytes(4).toString("hex")}`;
  await db.primary.query("INSERT INTO products (sku, name, price_minor, currency, available) VALUES ($1, $1, 100, 'USD', $2)", [sku, available]);
  return sku;
}

async function adjustments(sku: string): Promise<Array<{ delta: string; reason: string; key: string | null }>> {
  const { rows } = await db.primary.query<{ delta: string; reason: string; key: string | null }>("SELECT delta, reason, idempotency_key AS key FROM stock_adjustments WHERE sku = $1 ORDER BY id", [sku]);
  return rows;
}

async function codeOf(call: Promise<unknown>): Promise<Code | undefined> {
  return call.then(
    () => undefined,
    (error: unknown) => ConnectError.from(error).code,
  );
}

describe("AdjustStock", () => {
  it("changes available stock and records why; below zero is FAILED_PRECONDITION and an unknown SKU NOT_FOUND, both changing nothing", async () => {
    const sku = await product(10);
    expect((await api.adjustStock({ sku, delta: 5n, reason: "restock" })).product?.available).toBe(15n);
    expect((await api.adjustStock({ sku, delta: -3n })).product?.available).toBe(12n);
    expect(await codeOf(api.adjustStock({ sku, delta: -13n }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(api.adjustStock({ sku: `${sku}-unknown`, delta: 1n }))).toBe(Code.NotFound);
    expect((await api.getProduct({ sku })).product?.available).toBe(12n);
    expect(await adjustments(sku)).toEqual([
      { delta: "5", reason: "restock", key: null },
      { delta: "-3", reason: "manual adjustment", key: null },
    ]);
  });

  it("applies once per SKU and idempotency key: the same request again changes nothing, the key with another delta or reason is ALREADY_EXISTS", async () => {
    const [sku, other] = [await product(10), await product(10)];
    const request = { sku, delta: -10n, reason: "shrinkage", idempotencyKey: "count-2026-12" };
    expect((await api.adjustStock(request)).product?.available).toBe(0n);
    // Applied again, it would go below zero: the replay answers with the product as it is.
    expect((await api.adjustStock(request)).product?.available).toBe(0n);
    expect(await codeOf(api.adjustStock({ ...request, delta: -5n }))).toBe(Code.AlreadyExists);
    expect(await codeOf(api.adjustStock({ ...request, reason: "theft" }))).toBe(Code.AlreadyExists);
    // The same key for another SKU is a key of its own.
    expect((await api.adjustStock({ ...request, sku: other })).product?.available).toBe(0n);
    expect(await adjustments(sku)).toEqual([{ delta: "-10", reason: "shrinkage", key: "count-2026-12" }]);
  });

  it("applies once when requests with the same key race", async () => {
    const sku = await product(0);
    // Connections open first, so that the requests' transactions run side by side.
    await Promise.all(Array.from({ length: 8 }, () => db.primary.query("SELECT pg_sleep(0.05)")));
    const results = await Promise.all(Array.from({ length: 6 }, () => api.adjustStock({ sku, delta: 7n, idempotencyKey: "restock-1" })));
    expect(results.map((r) => r.product?.available)).toEqual(Array.from({ length: 6 }, () => 7n));
    expect(await adjustments(sku)).toHaveLength(1);
  });
});
