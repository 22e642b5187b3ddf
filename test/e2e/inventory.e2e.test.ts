// Smoke test of the end-to-end harness: the inventory service runs as its own
// process on a free port with its own database, and answers the same calls
// through buf curl (gRPC + reflection), @grpc/grpc-js and HTTP/1.1 JSON (Connect).
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { InventoryService } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { bufCurl, bufCurlGrpc, connectClient, grpcJsClient, postJson } from "../support/clients.js";
import { useSystem } from "../support/system.js";

// Every behaviour is checked with gRPC served by @grpc/grpc-js (the default) and by connect-node.
const transports = ["grpc-js", "connect"] as const;
const demoSkus = ["CB-005", "DK-006", "HS-004", "KB-001", "LS-008", "MN-003", "MS-002", "WC-007"];

describe.each(transports)("inventory end to end (RPC_TRANSPORT=%s)", (transport) => {
  const system = useSystem({ services: ["inventory"], env: { RPC_TRANSPORT: transport } });

  describe("health is SERVING", () => {
    it("via buf curl over gRPC (schema by reflection)", async () => {
      const answer = await bufCurlGrpc(system().url("inventory"), "grpc.health.v1.Health/Check", {});
      expect(answer).toEqual({ status: "SERVING" });
    });

    it("via @grpc/grpc-js", async () => {
      const client = grpcJsClient(Health, system().address("inventory"));
      try {
        const response = await client.unary(Health.method.check, { service: "orderflow.inventory.v1.InventoryService" });
        expect(response.status).toBe(ServingStatus.SERVING);
      } finally {
        client.close();
      }
    });

    it("via HTTP/1.1 JSON (Connect protocol)", async () => {
      const response = await postJson(system().url("inventory"), "/grpc.health.v1.Health/Check", {});
      expect(response.httpVersion).toBe("1.1");
      expect(response.status).toBe(200);
      expect(response.json).toEqual({ status: "SERVING" });
    });
  });

  it("lists its services through reflection (buf curl --list-services)", async () => {
    const result = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", "--list-services", system().url("inventory")]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.split("\n")).toEqual(expect.arrayContaining(["orderflow.inventory.v1.InventoryService", "grpc.health.v1.Health"]));
  });

  it("ListProducts returns the demo catalogue through all clients", async () => {
    const url = system().url("inventory");
    const viaBuf = (await bufCurlGrpc(url, "orderflow.inventory.v1.InventoryService/ListProducts", { pageSize: 100 })) as { products: { sku: string }[] };
    const viaHttp = await postJson(url, "/orderflow.inventory.v1.InventoryService/ListProducts", { pageSize: 100 });
    const grpcJs = grpcJsClient(InventoryService, system().address("inventory"));
    const viaGrpcJs = await grpcJs.unary(InventoryService.method.listProducts, { pageSize: 100 }).finally(() => grpcJs.close());
    const viaConnect = await connectClient(InventoryService, url, "grpc").listProducts({ pageSize: 100 });

    const skus = (products: { sku: string }[]) => products.map((p) => p.sku).sort();
    expect(skus(viaBuf.products)).toEqual(demoSkus);
    expect(viaHttp.status).toBe(200);
    expect(skus((viaHttp.json as { products: { sku: string }[] }).products)).toEqual(demoSkus);
    expect(skus(viaGrpcJs.products)).toEqual(demoSkus);
    expect(skus(viaConnect.products)).toEqual(demoSkus);
    const keyboard = viaGrpcJs.products.find((p) => p.sku === "KB-001");
    expect(keyboard?.price?.amountMinor).toBe(8900n);
    expect(keyboard?.price?.currency).toBe("USD");
  });

  it("rejects an invalid request with INVALID_ARGUMENT, over Connect JSON and gRPC", async () => {
    const url = system().url("inventory");
    const viaHttp = await postJson(url, "/orderflow.inventory.v1.InventoryService/ListProducts", { pageSize: 1000 });
    expect(viaHttp.status).toBe(400);
    expect(viaHttp.json).toMatchObject({ code: "invalid_argument" });
    const error = await connectClient(InventoryService, url, "grpc")
      .listProducts({ pageSize: 1000 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
  });
});
