import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { Writable } from "node:stream";
import { register } from "prom-client";
import { describe, expect, it } from "vitest";
import winston from "winston";
import { InventoryService, type Product, ProductSchema } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { createLogger } from "../platform/logger.js";
import { Catalogue } from "./catalogue.js";

const logger = createLogger("catalogue-test", "error");

/** A logger that keeps every record it is given. */
function recordingLogger() {
  const records: winston.LogEntry[] = [];
  const stream = new Writable({
    objectMode: true,
    write(record: winston.LogEntry, _encoding, done) {
      records.push(record);
      done();
    },
  });
  return { logger: winston.createLogger({ level: "info", transports: [new winston.transports.Stream({ stream })] }), records };
}

/** An in-memory inventory (Connect's router transport) that records every BatchGetProducts call. */
function inventory(prices: Map<string, bigint>, fail: { now: boolean; code?: Code } = { now: false }) {
  const calls: string[][] = [];
  const transport = createRouterTransport(({ service }) => {
    service(InventoryService, {
      batchGetProducts(request) {
        calls.push(request.skus);
        if (fail.now) throw new ConnectError("down", fail.code ?? Code.Unavailable);
        const products = request.skus.flatMap((sku) => {
          const amountMinor = prices.get(sku);
          return amountMinor === undefined ? [] : [create(ProductSchema, { sku, price: { amountMinor, currency: "USD" } })];
        });
        return { products };
      },
    });
  });
  return { client: createClient(InventoryService, transport), calls };
}

const priceOf = (products: Product[], sku: string) => products.find((p) => p.sku === sku)?.price?.amountMinor;

/** Products whose lookup failed, as /metrics reports them. */
async function failedLookups(): Promise<number> {
  const metric = await register.getSingleMetric("orderflow_order_catalogue_lookups_total")?.get();
  return metric?.values.find((v) => v.labels["result"] === "failed")?.value ?? 0;
}

describe("Catalogue", () => {
  it("prices from a product read within cacheMs without asking inventory again, and asks again after", async () => {
    const prices = new Map([["A", 100n]]);
    const { client, calls } = inventory(prices);
    let now = 1_000;
    const catalogue = new Catalogue(client, { cacheMs: 5_000, now: () => now, logger });

    expect(priceOf(await catalogue.products(["A"]), "A")).toBe(100n);
    prices.set("A", 250n);
    now += 4_999;
    expect(priceOf(await catalogue.products(["A"]), "A")).toBe(100n);
    expect(calls).toEqual([["A"]]);

    now += 1;
    expect(priceOf(await catalogue.products(["A"]), "A")).toBe(250n);
    expect(calls).toEqual([["A"], ["A"]]);
  });

  it("asks for an unknown SKU on every order, so a product added later can be ordered at once", async () => {
    const prices = new Map([["A", 100n]]);
    const { client, calls } = inventory(prices);
    const catalogue = new Catalogue(client, { cacheMs: 60_000, logger });

    expect((await catalogue.products(["A", "NEW"])).map((p) => p.sku)).toEqual(["A"]);
    prices.set("NEW", 7n);
    expect(priceOf(await catalogue.products(["A", "NEW"]), "NEW")).toBe(7n);
    expect(calls).toEqual([["A", "NEW"], ["NEW"]]);
  });

  it("asks for the SKUs of one turn in one call, and for every order with cacheMs 0", async () => {
    const { client, calls } = inventory(new Map([["A", 1n], ["B", 2n]]));
    const catalogue = new Catalogue(client, { cacheMs: 0, logger });

    await Promise.all([catalogue.products(["A"]), catalogue.products(["B", "A"])]);
    await catalogue.products(["A"]);
    expect(calls).toEqual([["A", "B"], ["A"]]);
  });

  it("keeps at most maxProducts, dropping the one read from inventory longest ago", async () => {
    const { client, calls } = inventory(new Map([["A", 1n], ["B", 2n], ["C", 3n]]));
    const catalogue = new Catalogue(client, { cacheMs: 60_000, maxProducts: 2, logger });

    await catalogue.products(["A"]);
    await catalogue.products(["B"]);
    await catalogue.products(["C"]);
    await catalogue.products(["B", "C"]);
    await catalogue.products(["A"]);
    expect(calls).toEqual([["A"], ["B"], ["C"], ["A"]]);
  });

  it("answers UNAVAILABLE when inventory cannot answer, and keeps nothing from the failure", async () => {
    const fail = { now: true };
    const { client, calls } = inventory(new Map([["A", 1n]]), fail);
    const catalogue = new Catalogue(client, { cacheMs: 60_000, logger });

    const failedBefore = await failedLookups();
    await expect(catalogue.products(["A"])).rejects.toMatchObject({ code: Code.Unavailable });
    expect((await failedLookups()) - failedBefore).toBe(1);
    fail.now = false;
    expect(priceOf(await catalogue.products(["A"]), "A")).toBe(1n);
    expect(calls).toHaveLength(2);
  });

  it("logs once when lookups start failing and once when inventory answers again, not once a call", async () => {
    const fail = { now: true };
    const { client } = inventory(new Map([["A", 1n], ["B", 2n]]), fail);
    const { logger: recording, records } = recordingLogger();
    const catalogue = new Catalogue(client, { cacheMs: 0, logger: recording });

    await expect(catalogue.products(["A", "B"])).rejects.toMatchObject({ code: Code.Unavailable });
    await expect(catalogue.products(["A"])).rejects.toMatchObject({ code: Code.Unavailable });
    expect(records).toMatchObject([{ level: "warn", code: "Unavailable", error: "[unavailable] down" }]);
    fail.now = false;
    await catalogue.products(["A"]);
    await catalogue.products(["B"]);
    expect(records).toHaveLength(2);
    expect(records[1]).toMatchObject({ level: "info", failedProducts: 3 });
  });

  it("answers what a retry can cure as UNAVAILABLE, and any other failure of inventory as INTERNAL", async () => {
    for (const [code, answered] of [
      [Code.DeadlineExceeded, Code.Unavailable],
      [Code.ResourceExhausted, Code.Unavailable],
      [Code.Aborted, Code.Unavailable],
      [Code.Canceled, Code.Unavailable],
      [Code.InvalidArgument, Code.Internal],
      [Code.PermissionDenied, Code.Internal],
      [Code.Unimplemented, Code.Internal],
    ] as const) {
      const { client } = inventory(new Map([["A", 1n]]), { now: true, code });
      const failure = await new Catalogue(client, { cacheMs: 0, logger }).products(["A"]).catch((error: unknown) => ConnectError.from(error));
      expect(failure).toMatchObject({ code: answered });
      expect((failure as ConnectError).rawMessage).toContain(Code[code]);
    }
  });
});
