import { describe, expect, it } from "vitest";
import { CrashLoop } from "./restart-policy.js";

describe("CrashLoop", () => {
  const policy = { initialDelayMs: 1_000, maxDelayMs: 30_000, resetAfterMs: 60_000 };

  it("doubles the wait with each crash in a row, up to the longest", () => {
    const loop = new CrashLoop(policy);
    const waits = Array.from({ length: 7 }, () => loop.crashed(500));
    expect(waits).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
  });

  it("starts the count afresh after a process that stayed up", () => {
    const loop = new CrashLoop(policy);
    loop.crashed(100);
    loop.crashed(100);
    expect(loop.crashed(100)).toBe(4_000);
    expect(loop.crashed(60_000)).toBe(1_000);
    expect(loop.crashed(59_999)).toBe(2_000);
  });
});
