import { describe, expect, it } from "vitest";
import { readMachineContextSwitches, readRunQueueWaitSeconds, readWakeUps, ResourceMonitor, runQueueWaitOf } from "./resources.js";

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
    expect(ResourceMonitor.percentOfElapsed(before, after, 2_000)).toEqual({ order: 25, iowait: 10 });
    expect(ResourceMonitor.percentOfElapsed(before, after, 0)).toEqual({});
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

describe("waiting for a core", () => {
  it("reads the run-queue delay, not the time on a core, from a thread's schedstat", () => {
    expect(runQueueWaitOf("36060949 21779177 75\n")).toBeCloseTo(0.021779177, 9);
  });

  it("grows for this process's threads when more of them spin than there are cores", async () => {
    const { cpus } = await import("node:os");
    const { Worker } = await import("node:worker_threads");
    const before = readRunQueueWaitSeconds(process.pid) ?? Number.NaN;
    // Each spins 0.4 s, says so and stays: an ended thread's wait leaves the sum with it.
    const spin = "const { parentPort } = require('node:worker_threads'); const end = Date.now() + 400; while (Date.now() < end); parentPort.postMessage('spun'); setTimeout(() => {}, 60_000);";
    const workers = Array.from({ length: cpus().length + 1 }, () => new Worker(spin, { eval: true }));
    try {
      await Promise.all(workers.map((w) => new Promise((resolve) => w.once("message", resolve))));
      // n + 1 threads spinning 0.4 s on n cores wait 0.4 s between them at the least.
      expect((readRunQueueWaitSeconds(process.pid) ?? 0) - before).toBeGreaterThan(0.2);
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
    expect(readRunQueueWaitSeconds(2 ** 22 + 1)).toBeUndefined();
  });
});
