import { describe, expect, it } from "vitest";
import { formatMoney } from "./money.js";

describe("formatMoney", () => {
  it("formats minor units with the currency's own digits, exactly for any int64", () => {
    expect(formatMoney(12345n, "USD")).toBe("$123.45");
    expect(formatMoney(-5n, "EUR")).toBe("-€0.05");
    expect(formatMoney(1500n, "JPY")).toBe("¥1,500");
    expect(formatMoney(9223372036854775807n, "USD")).toBe("$92,233,720,368,547,758.07");
  });

  it("gives the same answer from its cached formatter, and falls back for codes Intl refuses", () => {
    for (let i = 0; i < 3; i++) expect(formatMoney(100n, "USD")).toBe("$1.00");
    expect(formatMoney(12345n, "dollars")).toBe("123.45 dollars");
    expect(formatMoney(12345n, "dollars")).toBe("123.45 dollars");
  });
});
