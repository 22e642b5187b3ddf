import { afterEach, describe, expect, it, vi } from "vitest";
import { timeOrderedId } from "./ids.js";
import { createLogger } from "./logger.js";
import { firstIdOf, startRetention } from "./retention.js";

const logger = createLogger("retention-test", "error");
const DAY_MS = 24 * 60 * 60 * 1000;

afterEach(() => {
  vi.useRealTimers();
});

describe("retention", () => {
  it("makes the smallest id of a millisecond: ids made before it sort below it, ids made after above", async () => {
    const before = timeOrderedId();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const at = new Date();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const after = timeOrderedId();
    expect([before < firstIdOf(at), after > firstIdOf(at)]).toEqual([true, true]);
    expect(firstIdOf(new Date(0x0123456789ab))).toBe("01234567-89ab-0000-0000-000000000000");
  });

  it("deletes what is older than the retention a minute after start, then every interval, on an active replica only; nothing at 0 days", async () => {
    vi.useFakeTimers();
    const cuts: number[] = [];
    const deleteBefore = async (before: Date) => {
      cuts.push(Date.now() - before.getTime());
      return 0;
    };
    let active = false;
    const stops = [
      startRetention({ what: "rows", retentionDays: 30, deleteBefore, active: () => active, intervalMs: 3_600_000, logger }),
      startRetention({ what: "kept rows", retentionDays: 0, deleteBefore, logger }),
    ];
    await vi.advanceTimersByTimeAsync(60_000);
    expect(cuts).toEqual([]);
    active = true;
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(cuts).toEqual([30 * DAY_MS]);
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(cuts).toHaveLength(2);
    for (const stop of stops) stop();
  });
});
