import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it, vi } from "vitest";
import { type Counter, register } from "prom-client";
import { collectProcessMetrics, counter, deferredCounter, startMetricsServer } from "./metrics.js";

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

describe("deferredCounter", () => {
  async function values(name: string): Promise<Record<string, number>> {
    const metric = register.getSingleMetric(name);
    if (!metric) throw new Error(`${name} is not registered`);
    return Object.fromEntries((await metric.get()).values.map((v) => [Object.values(v.labels).join("/"), v.value]));
  }

  it("sums increments per label set and hands them to the registry when it is read", async () => {
    const calls = deferredCounter("test_deferred_calls_total", "test", ["method", "code"]);
    const ok = { method: "Get", code: "ok" };
    const notFound = { method: "Get", code: "not_found" };
    for (let i = 0; i < 5; i++) calls.inc(ok);
    calls.inc(notFound, 2);
    expect(await values("test_deferred_calls_total")).toEqual({ "Get/ok": 5, "Get/not_found": 2 });
    calls.inc(ok);
    const body = await (await fetch(`${url}/metrics`)).text();
    expect(body).toContain('test_deferred_calls_total{method="Get",code="ok"} 6');
  });

  it("hands the sums over at once past maxPending label sets, and a second counter of a name counts at once", () => {
    const calls = deferredCounter("test_deferred_many_total", "test", ["key"], 2);
    const metric = register.getSingleMetric("test_deferred_many_total") as Counter<"key">;
    const handedOver = vi.spyOn(metric, "inc");
    calls.inc({ key: "a" });
    calls.inc({ key: "b" });
    expect(handedOver).not.toHaveBeenCalled();
    calls.inc({ key: "c" });
    expect(handedOver.mock.calls).toEqual([[{ key: "a" }, 1], [{ key: "b" }, 1], [{ key: "c" }, 1]]);
    deferredCounter("test_deferred_many_total", "test", ["key"]).inc({ key: "a" });
    expect(handedOver).toHaveBeenCalledTimes(4);
  });
});

describe("counter", () => {
  it("exports its known label sets at 0 from the start, so that the first increment is seen as one", async () => {
    const timeouts = counter("test_known_timeouts_total", "test", ["step"], [{ step: "fraud" }, { step: "charge" }]);
    const body = await (await fetch(`${url}/metrics`)).text();
    expect(body).toContain('test_known_timeouts_total{step="fraud"} 0');
    expect(body).toContain('test_known_timeouts_total{step="charge"} 0');
    timeouts.inc({ step: "charge" });
    expect((await timeouts.get()).values.map((v) => [v.labels["step"], v.value])).toEqual([["fraud", 0], ["charge", 1]]);
  });
});
