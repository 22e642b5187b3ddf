import { describe, expect, it } from "vitest";
import { readMachineContextSwitches, readWakeUps, ResourceMonitor } from "./resources.js";

describe("CPU per saga", () => {
  it("divides each process's CPU seconds by the sagas concluded, in milliseconds, leaving out I/O wait", () => {
    const before = new Map([["order", 10], ["machine", 100], ["iowait", 1]]);
    const after = new Map([["order", 10.5], ["machine", 102], ["iowait", 1.2], ["fraud", 3]]);
    expect(ResourceMonitor.cpuMsPer(before, after, 1_000)).toEqual({ order: 0.5, machine: 2 });
  });

  it("gives nothing when no saga concluded", () => {
    expect(ResourceMonitor.cpuMsPer(new Map([["order", 1]]), new Map([["order", 2]]), 0)).toBeNull();
  });
});

describe("CPU percent", () => {
  it("gives each process's share of one core over the elapsed time, I/O wait included", () => {
    const before = new Map([["order", 10], ["iowait", 1]]);
    const after = new Map([["order", 10.5], ["iowait", 1.2], ["fraud", 3]]);
    expect(ResourceMonitor.cpuPercent(before, after, 2_000)).toEqual({ order: 25, iowait: 10 });
    expect(ResourceMonitor.cpuPercent(before, after, 0)).toEqual({});
  });
});

describe("wake-ups", () => {
  it("counts this process's threads blocking and being woken: a timer wait adds at least one", async () => {
    const before = readWakeUps(process.pid) ?? Number.NaN;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(readWakeUps(process.pid)).toBeGreaterThan(before);
    expect(readMachineContextSwitches()).toBeGreaterThan(0);
    expect(readWakeUps(2 ** 22 + 1)).toBeUndefined();
  });

  it("divides each process's wake-ups by the sagas concluded, to a tenth", () => {
    const before = new Map([["order", 1_000], ["machine", 50_000]]);
    const after = new Map([["order", 1_155], ["machine", 66_000], ["fraud", 9]]);
    expect(ResourceMonitor.wakeUpsPer(before, after, 100)).toEqual({ order: 1.6, machine: 160 });
    expect(ResourceMonitor.wakeUpsPer(before, after, 0)).toBeNull();
  });
});
