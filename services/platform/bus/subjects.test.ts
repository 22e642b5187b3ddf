import { describe, expect, it } from "vitest";
import { subjectWithin } from "./subjects.js";

describe("subjectWithin", () => {
  it.each([
    ["inventory.cmd.>", "inventory.>", true],
    ["inventory.cmd.reserve", "inventory.cmd.>", true],
    ["inventory.cmd.reserve", "inventory.*.reserve", true],
    ["inventory.*.reserve", "inventory.*.reserve", true],
    ["inventory.>", "inventory.>", true],
    ["inventory.cmd.>", "inventory.evt.>", false],
    ["inventory.>", "inventory.evt.>", false],
    ["inventory.*", "inventory.evt", false],
    ["inventory", "inventory.>", false],
    ["inventory.cmd", "inventory.*.x", false],
    ["inventory.cmd.reserve.x", "inventory.cmd.reserve", false],
    [">", "inventory.>", false],
    ["inventory.cmd.>", "inventory.*", false],
  ])("%s within %s: %s", (filter, pattern, within) => {
    expect(subjectWithin(filter, pattern)).toBe(within);
  });
});
