import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { register } from "prom-client";
import { describe, expect, it } from "vitest";
import { InventoryService } from "../../../gen/orderflow/inventory/v1/inventory_pb.js";
import { createLogger } from "../logger.js";
import { serverErrors, serverMetrics } from "./interceptors.js";

/** The code a caller gets when GetProduct throws `error` behind serverErrors. */
async function codeFor(error: unknown): Promise<Code> {
  const transport = createRouterTransport(
    (router) =>
      router.service(InventoryService, {
        getProduct: () => {
          throw error;
        },
      }),
    { router: { interceptors: [serverErrors(createLogger("interceptors-test", "error"))] } },
  );
  try {
    await createClient(InventoryService, transport).getProduct({ sku: "KB-001" });
  } catch (caught) {
    return ConnectError.from(caught).code;
  }
  throw new Error("the call succeeded");
}

/** An error as node-postgres raises it for a server error response. */
function postgresError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, severity: "FATAL" });
}

describe("serverErrors", () => {
  it("answers UNAVAILABLE (retryable) when Postgres goes away or a dependency does not answer", async () => {
    expect(await codeFor(postgresError("57P01", "terminating connection due to administrator command"))).toBe(Code.Unavailable);
    expect(await codeFor(postgresError("57P03", "the database system is starting up"))).toBe(Code.Unavailable);
    expect(await codeFor(new Error("timeout exceeded when trying to connect"))).toBe(Code.Unavailable);
    expect(await codeFor(new Error("connect ECONNREFUSED 127.0.0.1:6379"))).toBe(Code.Unavailable);
  });

  it("answers INTERNAL for a bug or any other fault, and passes a ConnectError on as it is", async () => {
    expect(await codeFor(new TypeError("cannot read properties of undefined"))).toBe(Code.Internal);
    expect(await codeFor(postgresError("23505", "duplicate key value violates unique constraint"))).toBe(Code.Internal);
    expect(await codeFor(new ConnectError("no such product", Code.NotFound))).toBe(Code.NotFound);
  });
});

describe("serverMetrics", () => {
  const key = (name: string, labels: object): string => `${name}${JSON.stringify(labels)}`;
  const series = async (name: string): Promise<Map<string, number>> => {
    const metric = await register.getSingleMetric(name)?.get();
    const ofInventory = (metric?.values ?? []).filter((v) => String(v.labels["method"]).startsWith("orderflow.inventory.v1.InventoryService/"));
    // A histogram's values name their series (_bucket, _sum, _count); a counter's do not.
    return new Map(ofInventory.map((v) => [key("metricName" in v ? String(v.metricName) : name, v.labels), v.value]));
  };
  const getProduct = "orderflow.inventory.v1.InventoryService/GetProduct";

  it("exports every method of the served services with every status code at 0 before any call, then counts each call once", async () => {
    const interceptor = serverMetrics([InventoryService]);
    const calls = await series("rpc_server_requests_total");
    expect(calls.size).toBe(InventoryService.methods.length * 17);
    expect([...calls.values()].every((value) => value === 0)).toBe(true);
    expect(calls.get(key("rpc_server_requests_total", { method: getProduct, code: "not_found" }))).toBe(0);
    expect(calls.has(key("rpc_server_requests_total", { method: "orderflow.inventory.v1.InventoryService/AdjustStock", code: "invalid_argument" }))).toBe(true);
    const durations = await series("rpc_server_duration_seconds");
    expect(durations.get(key("rpc_server_duration_seconds_count", { method: getProduct }))).toBe(0);

    const transport = createRouterTransport(
      (router) =>
        router.service(InventoryService, {
          getProduct: () => {
            throw new ConnectError("no such product", Code.NotFound);
          },
        }),
      { router: { interceptors: [interceptor] } },
    );
    await expect(createClient(InventoryService, transport).getProduct({ sku: "KB-404" })).rejects.toThrow("no such product");
    const after = await series("rpc_server_requests_total");
    const changed = [...after].filter(([name, value]) => value !== calls.get(name));
    expect(changed).toEqual([[key("rpc_server_requests_total", { method: getProduct, code: "not_found" }), 1]]);
  });
});
