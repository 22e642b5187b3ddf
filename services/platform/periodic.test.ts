import { afterEach, describe, expect, it, vi } from "vitest";
import { runPeriodically } from "./periodic.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("runPeriodically", () => {
  it("runs first after its first delay, then every interval, until stopped", async () => {
    vi.useFakeTimers();
    let runs = 0;
    const stop = runPeriodically(1_000, async () => void runs++, () => undefined, 100);
    await vi.advanceTimersByTimeAsync(99);
    expect(runs).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(runs).toBe(3);
    stop();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(runs).toBe(3);
  });

  it("waits a whole interval first by default, skips ticks while a pass runs, and hands failures over", async () => {
    vi.useFakeTimers();
    let started = 0;
    let finish: () => void = () => undefined;
    const failures: unknown[] = [];
    const stop = runPeriodically(
      1_000,
      () => {
        started++;
        return new Promise<void>((resolve, reject) => (finish = started === 1 ? resolve : () => reject(new Error("pass failed"))));
      },
      (err) => failures.push(err),
    );
    await vi.advanceTimersByTimeAsync(999);
    expect(started).toBe(0);
    await vi.advanceTimersByTimeAsync(3_001);
    expect(started).toBe(1);
    finish();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(started).toBe(2);
    finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(failures).toHaveLength(1);
    stop();
  });
});
