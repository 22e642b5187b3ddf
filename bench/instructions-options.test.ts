import { describe, expect, it } from "vitest";
import { parseInstructionOptions } from "./instructions-options.js";
import { UsageError } from "./options.js";

describe("parseInstructionOptions", () => {
  it("counts a thousand sagas at 10/s after a thousand uncounted, and a minute of each call after a minute uncounted", () => {
    expect(parseInstructionOptions([], "/repo")).toEqual({ warmupSagas: 1_000, sagas: 1_000, ratePerSec: 10, callsMs: 60_000, idleMs: 30_000, outDir: "/repo/bench/results", dumpsDir: undefined, help: false });
  });

  it("takes every knob", () => {
    const options = parseInstructionOptions(["--sagas", "300", "--warmup-sagas", "200", "--rate", "5", "--calls-duration", "12.5", "--idle", "8", "--out", "/tmp/x", "--dumps", "/tmp/d"], "/repo");
    expect(options).toMatchObject({ sagas: 300, warmupSagas: 200, ratePerSec: 5, callsMs: 12_500, idleMs: 8_000, outDir: "/tmp/x", dumpsDir: "/tmp/d" });
  });

  it("refuses unknown flags and values that are not counts", () => {
    expect(() => parseInstructionOptions(["--quick"], "/repo")).toThrow(UsageError);
    expect(() => parseInstructionOptions(["--sagas", "0"], "/repo")).toThrow(/--sagas needs a whole number/);
    expect(() => parseInstructionOptions(["--rate"], "/repo")).toThrow(/--rate/);
    expect(() => parseInstructionOptions(["--idle", "-3"], "/repo")).toThrow(UsageError);
  });
});
