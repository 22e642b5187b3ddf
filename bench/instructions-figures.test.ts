import { describe, expect, it } from "vitest";
import { costsPerUnit, idleRate, perUnit, sumCosts } from "./instructions-figures.js";
import { sum } from "./stats.js";

describe("perUnit", () => {
  it("takes the idle process's instructions over the window's length out before sharing the rest", () => {
    // 10 s at 1 M idle instructions a second: 10 M of the 50 M are the process's own.
    expect(perUnit({ instructions: 50_000_000, windowMs: 10_000, idlePerSec: 1_000_000, units: 100 })).toBe(400_000);
    expect(perUnit({ instructions: 50_000_000, windowMs: 10_000, idlePerSec: 0, units: 100 })).toBe(500_000);
  });

  it("never reads below zero, and refuses a window that did no work", () => {
    expect(perUnit({ instructions: 1_000, windowMs: 10_000, idlePerSec: 1_000_000, units: 5 })).toBe(0);
    expect(() => perUnit({ instructions: 1_000, windowMs: 1_000, idlePerSec: 0, units: 0 })).toThrow(/no work/);
  });
});

describe("idleRate", () => {
  it("is instructions per second of the idle window", () => {
    expect(idleRate(30_000_000, 20_000)).toBe(1_500_000);
    expect(idleRate(5, 0)).toBe(0);
  });
});

describe("sum", () => {
  it("adds any iterable of numbers, nothing as 0", () => {
    expect(sum([1, 2, 3.5])).toBe(6.5);
    expect(sum(new Map([["a", 4]]).values())).toBe(4);
    expect(sum([])).toBe(0);
  });
});

describe("costsPerUnit", () => {
  it("takes the idle process's program work out of the window's program part; the collector's and the compilers' are the window's own, and the parts add up", () => {
    const window = { total: 10_000_000, gc: 3_000_000, compiler: 2_000_000, markCompacts: 1 };
    // 1 s idle: 0.8 M of program work a second (and a collection of 0.2 M); the window is 2 s long.
    const idle = { total: 1_000_000, gc: 200_000, compiler: 0, markCompacts: 0 };
    expect(costsPerUnit(window, 2_000, idle, 1_000, 10)).toEqual({ all: 840_000, program: 340_000, gc: 300_000, compiler: 200_000 });
  });
});

describe("sumCosts", () => {
  it("adds processes' costs part by part", () => {
    const a = { all: 10, program: 5, gc: 3, compiler: 2 };
    const b = { all: 100, program: 50, gc: 30, compiler: 20 };
    expect(sumCosts([a, b])).toEqual({ all: 110, program: 55, gc: 33, compiler: 22 });
  });
});
