// Graceful shutdown: on SIGTERM a service turns NOT_SERVING, ends open watch
// streams, lets in-flight calls finish, closes its pools and exits 0 — well
// within SHUTDOWN_GRACE_MS, so a rolling update never waits for the kill.
import { createServer, type AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { OrderService } from "../../gen/orderflow/order/v1/order_pb.js";
import { connectClient } from "../support/clients.js";
import { sharedInfra, useSystem } from "../support/system.js";
import { System } from "../../tools/system.js";

const graceMs = 20_000;
const system = useSystem({ services: ["inventory", "order"], env: { SHUTDOWN_GRACE_MS: String(graceMs) } });

describe("graceful shutdown", () => {
  it("ends watch streams, finishes in-flight calls and exits 0 on SIGTERM", async () => {
    const orders = connectClient(OrderService, system().url("order"), "grpc");
    const health = connectClient(Health, system().url("order"), "grpc");
    const { order } = await orders.createOrder({ customerId: "shutdown", items: [{ sku: "KB-001", quantity: 1n }] });

    const watched: string[] = [];
    const watching = (async () => {
      for await (const update of orders.watchOrder({ orderId: order!.orderId })) watched.push(update.order!.orderId);
    })();
    const healthStatuses: ServingStatus[] = [];
    const healthWatch = (async () => {
      for await (const update of health.watch({ service: "" })) healthStatuses.push(update.status);
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Calls already sent when SIGTERM arrives: each is either answered, or refused
    // unprocessed by the GOAWAY (REFUSED_STREAM, safe for the client to retry).
    const inFlight = Promise.allSettled(Array.from({ length: 20 }, () => orders.getOrder({ orderId: order!.orderId })));

    const started = Date.now();
    await system().system.stopService("order", "SIGTERM");
    const tookMs = Date.now() - started;

    expect(system().system.info("order").exit).toEqual({ code: 0, signal: null });
    expect(tookMs).toBeLessThan(graceMs);
    const calls = await inFlight;
    for (const call of calls) if (call.status === "rejected") expect(String(call.reason)).toContain("REFUSED_STREAM");
    await expect(watching).resolves.toBeUndefined();
    await healthWatch.catch(() => undefined);
    expect(healthStatuses[0]).toBe(ServingStatus.SERVING);
    expect(healthStatuses.at(-1)).toBe(ServingStatus.NOT_SERVING);
    expect(watched[0]).toBe(order!.orderId);
  });
});

describe("a signal before the service is up", () => {
  it("stops a service still connecting to its database at once, and cleanly (a container's PID 1 has no default action)", async () => {
    // A "database" that takes the connection and never answers: the service waits in its start.
    const blackHole = createServer(() => undefined);
    const connected = new Promise<void>((resolve) => blackHole.once("connection", () => resolve()));
    await new Promise<void>((resolve) => blackHole.listen(0, "127.0.0.1", resolve));
    const { port } = blackHole.address() as AddressInfo;
    const { natsUrl, redisUrl } = sharedInfra();
    const waiting = new System({ infra: { databaseUrl: `postgres://nobody@127.0.0.1:${port}/nothing`, natsUrl, redisUrl }, services: ["inventory"], ports: "free", inheritEnv: false, output: () => undefined, readyTimeoutMs: 60_000 });
    const up = waiting.up().catch((error: unknown) => error);
    try {
      await connected;
      await waiting.stopService("inventory", "SIGTERM");
      expect(waiting.info("inventory").exit).toEqual({ code: 0, signal: null });
      expect(String(await up)).toContain("before it was ready");
    } finally {
      await waiting.stop();
      blackHole.close();
    }
  });
});
