import { describe, expect, it } from "vitest";
import { FamilyCounter } from "./family-counter.js";

describe("FamilyCounter", () => {
  it("keeps what an exited process had counted, so the family's total never falls", () => {
    const family = new FamilyCounter();
    expect(family.total(new Map([[10, 5], [11, 3]]))).toBe(8);
    expect(family.total(new Map([[10, 6]]))).toBe(9);
    expect(family.total(new Map([[10, 7], [12, 1]]))).toBe(11);
  });

  it("counts a pid taken again by a new process as a new process", () => {
    const family = new FamilyCounter();
    expect(family.total(new Map([[10, 5]]))).toBe(5);
    expect(family.total(new Map([[10, 1]]))).toBe(6);
  });
});
