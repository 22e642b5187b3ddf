import { describe, expect, it } from "vitest";
import { Samples } from "./stats.js";
import { completedWhileArriving, rejectionNote } from "./throughput.js";

/** Confirmation times at `perSec` from `from` to `to` (ms). */
function confirmations(samples: Samples, perSec: number, from: number, to: number): void {
  for (let t = from; t < to; t += 1_000 / perSec) samples.add(t);
}

describe("completedWhileArriving", () => {
  it("is the arrival rate when the system keeps up, whatever its latency", () => {
    const confirmed = new Samples();
    // 200/s arrive from 0 to 10 s and are confirmed 2.5 s later.
    confirmations(confirmed, 200, 2_500, 12_500);
    expect(completedWhileArriving(confirmed, { start: 0, warmupMs: 1_000, arrivalsEnd: 10_000, medianLatencyMs: 2_500 })).toBeCloseTo(200, 0);
  });

  it("leaves out the faster drain after the arrivals: the capacity under load", () => {
    const confirmed = new Samples();
    // 700/s confirmed while 1,200/s arrive, 1,100/s once they have stopped.
    confirmations(confirmed, 700, 500, 10_000);
    confirmations(confirmed, 1_100, 10_000, 20_000);
    expect(completedWhileArriving(confirmed, { start: 0, warmupMs: 1_000, arrivalsEnd: 10_000, medianLatencyMs: 5_000 })).toBeCloseTo(700, 0);
  });

  it("counts the arrivals after the warm-up whole when the median latency leaves under a second of them", () => {
    const confirmed = new Samples();
    confirmations(confirmed, 300, 2_000, 10_000);
    confirmations(confirmed, 900, 10_000, 30_000);
    // From 1 s to 10 s: 8 s of 300/s in 9 s.
    expect(completedWhileArriving(confirmed, { start: 0, warmupMs: 1_000, arrivalsEnd: 10_000, medianLatencyMs: 9_500 })).toBeCloseTo((300 * 8) / 9, 0);
  });
});

describe("rejectionNote", () => {
  it("says nothing when (almost) every concluded order was confirmed", () => {
    expect(rejectionNote(800, 8_000, 0)).toBeUndefined();
    expect(rejectionNote(800, 8_000, 80)).toBeUndefined();
    expect(rejectionNote(800, 0, 0)).toBeUndefined();
  });

  it("names the step, the rejections and the limit that most often causes them", () => {
    const note = rejectionNote(800, 5_000, 3_000);
    expect(note).toContain("saga step 800/s: 3000 of 8000 concluded orders were rejected");
    expect(note).toContain("FRAUD_VELOCITY_MAX_ORDERS");
  });
});
