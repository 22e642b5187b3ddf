import { describe, expect, it } from "vitest";
import { ResourceMonitor } from "./resources.js";

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
