import { afterEach, describe, expect, it, vi } from "vitest";
import { CpuSecondSampler, slowSecondsCpu } from "./cpu-by-second.js";
import type { LatencySummary } from "./stats.js";

const second = (p99: number, count = 100): LatencySummary => ({ count, p50: p99 / 2, p90: p99, p99, max: p99, mean: p99 / 2 });

describe("CpuSecondSampler", () => {
  afterEach(() => vi.useRealTimers());

  it("turns each second's growth of the CPU counters into % of one core, per process", () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "performance"] });
    const used = new Map([
      ["order", 10],
      ["machine", 100],
    ]);
    const sampler = new CpuSecondSampler({ cpu: () => new Map(used) }).start();
    used.set("order", 10.5).set("machine", 101.8);
    vi.advanceTimersByTime(1_000);
    used.set("order", 11.4).set("machine", 103.8);
    vi.advanceTimersByTime(1_000);
    expect(sampler.stop()).toEqual({ order: [50, 90], machine: [180, 200] });
  });
});

describe("slowSecondsCpu", () => {
  const cpu = {
    machine: [150, 150, 198, 196, 150, 150],
    postgres: [50, 50, 90, 88, 50, 50],
    order: [60, 60, 62, 60, 60, 60],
  };

  it("sets the CPU of the seconds whose p99 was over twice the median second's against the others'", () => {
    const latency = [second(80), second(90), second(400), second(300), second(85), second(95)];
    expect(slowSecondsCpu(latency, cpu)).toEqual({
      slow: [2, 3],
      cpu: [
        { name: "machine", slow: 197, others: 150 },
        { name: "postgres", slow: 89, others: 50 },
        { name: "order", slow: 61, others: 60 },
      ],
    });
  });

  it("finds nothing when no second stands out, when seconds had no orders, or without CPU by second", () => {
    expect(slowSecondsCpu([second(80), second(120), second(90)], cpu)).toBeUndefined();
    expect(slowSecondsCpu([second(80), second(900, 0), second(90)], cpu)).toBeUndefined();
    expect(slowSecondsCpu([second(80), second(400), second(90)], undefined)).toBeUndefined();
  });

  it("leaves out seconds the sampler did not reach (the step ended before their sample)", () => {
    const latency = [second(80), second(90), second(85), second(95), second(80), second(90), second(900)];
    expect(slowSecondsCpu(latency, cpu)).toBeUndefined();
  });
});
