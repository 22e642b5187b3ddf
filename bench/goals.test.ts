import { describe, expect, it } from "vitest";
import { goalsOf } from "./goals.js";
import type { BenchResult, Ratio } from "./results.js";

type Step = BenchResult["saga"]["steps"][number];

/** The fields of a step the goals read. */
const step = (offeredPerSec: number, p99: number, saturated = false, completedPerSec = offeredPerSec): Step =>
  ({ offeredPerSec, completedPerSec, saturated, durationMs: 10_000, e2eLatency: { count: 1, p50: p99 / 2, p90: p99, p99, max: p99, mean: p99 / 2 } }) as unknown as Step;

function saga(steps: Step[]): BenchResult["saga"] {
  const kept = steps.filter((s) => !s.saturated).map((s) => s.offeredPerSec);
  return { steps, maxCompletedPerSec: Math.max(...steps.map((s) => s.completedPerSec)), sustainedPerSec: Math.max(0, ...kept), saturated: steps.some((s) => s.saturated) };
}

const ratio = (name: string, system: number, ceiling: number): Ratio => ({ name, system, ceiling, ratio: system / ceiling, unit: "req/s", note: "" });
const getOrder = "GetOrder warm (one id) gRPC vs bare grpc-js";

describe("goalsOf", () => {
  it("meets the rate and the p99 where the run kept up with 1,700/s and its 850/s step's p99 was under 100 ms", () => {
    const [rate, latency] = goalsOf({ saga: saga([step(400, 40), step(850, 99.9), step(1_700, 300)]), ratios: [] });
    expect([rate?.met, latency?.met]).toEqual([true, true]);
    expect(latency?.measured).toBe("99.9 ms (median 50.0 ms; 10-s step)");
  });

  it("misses them when the run saturated first, or the 850/s step's p99 was 100 ms or more", () => {
    const [rate, latency] = goalsOf({ saga: saga([step(850, 100), step(1_200, 300), step(1_700, 900, true, 1_400)]), ratios: [] });
    expect(rate).toMatchObject({ met: false, measured: "kept up with 1,200/s offered; at most 1,400/s completed" });
    expect(latency?.met).toBe(false);
    const [, belowRate] = goalsOf({ saga: saga([step(400, 40), step(800, 900, true, 600)]), ratios: [] });
    expect(belowRate).toMatchObject({ met: false, measured: "saturated at 800/s, below 850/s" });
    const [, saturatedThere] = goalsOf({ saga: saga([step(850, 2_000, true, 700)]), ratios: [] });
    expect(saturatedThere?.met).toBe(false);
  });

  it("misses the rate where the 1,700/s step kept up by the saturation rule but confirmed under 98 % of it", () => {
    const [rate] = goalsOf({ saga: saga([step(1_200, 200), step(1_700, 500, false, 1_598), step(2_400, 1_200, true, 1_384)]), ratios: [] });
    expect(rate).toMatchObject({
      met: false,
      measured: "kept up with 1,700/s offered; at most 1,598/s completed, but at 1,700/s it confirmed 1,598/s (94 %; the goal counts ≥ 98 %)",
    });
    const [justKept] = goalsOf({ saga: saga([step(1_700, 500, false, 1_666)]), ratios: [] });
    expect(justKept?.met).toBe(true);
  });

  it("says what a run did not measure instead of judging it", () => {
    const [rate, latency, createOrder, cachedGetOrder] = goalsOf({ saga: saga([step(20, 30), step(40, 30)]), ratios: [] });
    expect([rate?.met, latency?.met, createOrder?.met, cachedGetOrder?.met]).toEqual([null, null, null, null]);
    expect(latency?.measured).toBe("no step at 850/s (--rates)");
  });

  it("judges GetOrder by h2load's alternated rounds where they ran, else by the Node generator; CreateOrder by the Node generator", () => {
    const withH2load = goalsOf({
      saga: saga([step(50, 10)]),
      ratios: [ratio("CreateOrder gRPC vs bare grpc-js", 900, 15_000), ratio("GetOrder warm gRPC vs bare grpc-js", 14_000, 15_000), ratio(`h2load: ${getOrder}`, 16_000, 20_000), ratio(`h2load CPU: ${getOrder}`, 17_000, 20_000)],
    });
    expect(withH2load[2]).toMatchObject({ met: false, measured: "0.06 (Node generator: 900 against 15,000 req/s)" });
    expect(withH2load[3]).toMatchObject({ met: true, measured: "0.80 (h2load: 16,000 against 20,000 req/s; 0.85 by server CPU per call)" });
    const withoutH2load = goalsOf({ saga: saga([step(50, 10)]), ratios: [ratio("GetOrder warm gRPC vs bare grpc-js", 11_000, 15_000)] });
    expect(withoutH2load[3]).toMatchObject({ met: false, measured: "0.73 (Node generator: 11,000 against 15,000 req/s)" });
  });
});
