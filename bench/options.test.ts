import { describe, expect, it } from "vitest";
import { parseOptions, stepLengthMs, UsageError } from "./options.js";

describe("parseOptions --history", () => {
  it("starts from an empty database unless asked for a history", () => {
    expect(parseOptions([], "/repo").history).toBe(0);
    expect(parseOptions(["--quick", "--history", "1000000"], "/repo").history).toBe(1_000_000);
    expect(parseOptions(["--history=250"], "/repo").history).toBe(250);
  });

  it("refuses a count that is not a whole number above 0, and a history in a targeted system's database", () => {
    expect(() => parseOptions(["--history", "0"], "/repo")).toThrow(UsageError);
    expect(() => parseOptions(["--history", "1e3x"], "/repo")).toThrow(/--history needs a whole number/);
    expect(() => parseOptions(["--history", "5", "--target", "order=127.0.0.1:8080,payment=127.0.0.1:8083"], "/repo")).toThrow(/leave out --target/);
  });
});

describe("parseOptions --no-stages", () => {
  it("times the saga's stages unless asked not to", () => {
    expect(parseOptions(["--quick"], "/repo").stages).toBe(true);
    expect(parseOptions(["--quick", "--no-stages"], "/repo").stages).toBe(false);
  });
});

describe("parseOptions --pod-memory", () => {
  it("runs the services without cgroups unless asked, and only the services it starts itself", () => {
    expect(parseOptions(["--quick"], "/repo").podMemory).toBe(false);
    expect(parseOptions(["--quick", "--pod-memory"], "/repo").podMemory).toBe(true);
    expect(() => parseOptions(["--pod-memory", "--target", "order=127.0.0.1:8080,payment=127.0.0.1:8083"], "/repo")).toThrow(/--pod-memory limits the services the bench starts/);
  });
});

describe("parseOptions --goal-step", () => {
  it("runs a full run's 850/s step for a minute and every other step for 10 s; quick runs keep one length", () => {
    const full = parseOptions([], "/repo");
    expect([stepLengthMs(full, 800), stepLengthMs(full, 850), stepLengthMs(full, 1_200)]).toEqual([10_000, 60_000, 10_000]);
    const quick = parseOptions(["--quick"], "/repo");
    expect(stepLengthMs(quick, 850)).toBe(quick.stepMs);
    expect(stepLengthMs(parseOptions(["--quick", "--goal-step", "30"], "/repo"), 850)).toBe(30_000);
  });

  it("lets --duration set the 850/s step too unless --goal-step says otherwise, in either order", () => {
    expect(stepLengthMs(parseOptions(["--duration", "20"], "/repo"), 850)).toBe(20_000);
    expect(stepLengthMs(parseOptions(["--goal-step", "90", "--duration", "20"], "/repo"), 850)).toBe(90_000);
    expect(stepLengthMs(parseOptions(["--duration=20", "--goal-step=90"], "/repo"), 850)).toBe(90_000);
    expect(() => parseOptions(["--goal-step", "0"], "/repo")).toThrow(/--goal-step needs a number of seconds above 0/);
  });
});

describe("parseOptions --query-duration", () => {
  it("holds a saga step for long without stretching the query runs, in either order", () => {
    const soak = parseOptions(["--quick", "--duration", "300", "--query-duration", "1.5"], "/repo");
    expect([soak.stepMs, soak.runMs]).toEqual([300_000, 1_500]);
    const reversed = parseOptions(["--query-duration=2", "--duration=300"], "/repo");
    expect([reversed.stepMs, reversed.runMs]).toEqual([300_000, 2_000]);
    expect(parseOptions(["--duration", "30"], "/repo").runMs).toBe(30_000);
    expect(() => parseOptions(["--query-duration", "-1"], "/repo")).toThrow(/--query-duration needs a number of seconds above 0/);
  });
});
