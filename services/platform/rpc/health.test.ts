import { describe, expect, it } from "vitest";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { Health } from "../../../gen/grpc/health/v1/health_pb.js";
import { HealthState, livenessService, ServingStatus } from "./health.js";

describe("HealthState", () => {
  it("keeps the liveness entry SERVING through a dependency's outage and the shutdown, while the others follow them", async () => {
    let databaseUp = true;
    const health = new HealthState(["orderflow.order.v1.OrderService"], [{ name: "postgres", check: async () => databaseUp }]);
    const client = createClient(Health, createRouterTransport(({ service }) => service(Health, health.impl())));
    const statusOf = async (service: string) => (await client.check({ service })).status;
    expect(await statusOf(livenessService)).toBe(ServingStatus.SERVING);
    await health.probe();
    expect(await statusOf("")).toBe(ServingStatus.SERVING);
    databaseUp = false;
    await health.probe();
    expect(await statusOf("")).toBe(ServingStatus.NOT_SERVING);
    expect(await statusOf("orderflow.order.v1.OrderService")).toBe(ServingStatus.NOT_SERVING);
    expect(await statusOf(livenessService)).toBe(ServingStatus.SERVING);
    health.shutdown();
    expect(await statusOf("")).toBe(ServingStatus.NOT_SERVING);
    expect(await statusOf(livenessService)).toBe(ServingStatus.SERVING);
  });
});
