import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { collectProcessMetrics, startMetricsServer } from "./metrics.js";

const server = await startMetricsServer(0, "127.0.0.1");
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
afterAll(() => new Promise((resolve) => server.close(resolve)));

function sample(body: string, name: string): number {
  const line = body.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`${name} missing from /metrics`);
  return Number(line.split(" ")[1]);
}

describe("process metrics", () => {
  it("serves Node's metrics at /metrics, with the event-loop delay sampled at the configured resolution", async () => {
    collectProcessMetrics(20);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const blockedUntil = Date.now() + 150;
    while (Date.now() < blockedUntil) {
      // Block the event loop so the delay histogram has something to see.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const response = await fetch(`${url}/metrics`);
    expect(response.status).toBe(200);
    const body = await response.text();
    expect(sample(body, "nodejs_eventloop_lag_max_seconds")).toBeGreaterThanOrEqual(0.1);
    // Ticks come no closer than the resolution: ~0.02 s here, ~0.01 s at prom-client's default.
    expect(sample(body, "nodejs_eventloop_lag_min_seconds")).toBeGreaterThanOrEqual(0.015);
    expect(sample(body, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
  });

  it("answers 404 anywhere but /metrics", async () => {
    expect((await fetch(`${url}/`)).status).toBe(404);
  });
});
