import { describe, expect, it } from "vitest";
import { cpuPerCall } from "./h2load.js";

describe("cpuPerCall", () => {
  it("divides the server's CPU seconds over the run by the calls, in µs", () => {
    expect(cpuPerCall(10.0, 12.5, 25_000)).toBe(100);
    expect(cpuPerCall(3.21, 3.43, 1_000)).toBe(220);
  });

  it("is null without both readings, without calls, or under 0.1 s of CPU (too few clock ticks)", () => {
    expect(cpuPerCall(undefined, 2, 100)).toBeNull();
    expect(cpuPerCall(1, undefined, 100)).toBeNull();
    expect(cpuPerCall(1, 2, 0)).toBeNull();
    expect(cpuPerCall(1, 1.05, 100)).toBeNull();
  });
});
