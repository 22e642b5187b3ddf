import { describe, expect, it } from "vitest";
import { Decision } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { formatMoney } from "../platform/money.js";
import { assess, type FraudRules } from "./rules.js";

const rules: FraudRules = { maxOrderAmountMinor: 500_000n, velocityMaxOrders: 3, velocityWindowSeconds: 60, blockedCustomers: new Set(["mallory"]) };
const usd = (amountMinor: bigint) => ({ amountMinor, currency: "USD" });

describe("assess", () => {
  it("approves an order within every rule, with no reasons", () => {
    expect(assess({ customerId: "alice", total: usd(500_000n) }, 3, rules)).toEqual({ decision: Decision.APPROVE, reasons: [] });
  });

  it("declines an order over the amount limit", () => {
    const a = assess({ customerId: "alice", total: usd(500_001n) }, 1, rules);
    expect(a.decision).toBe(Decision.DECLINE);
    expect(a.reasons).toEqual([{ code: "amount_limit", message: "order total $5,000.01 exceeds the limit of $5,000.00" }]);
  });

  it("declines past the velocity limit (the count includes this order)", () => {
    const a = assess({ customerId: "alice", total: usd(100n) }, 4, rules);
    expect(a.decision).toBe(Decision.DECLINE);
    expect(a.reasons.map((r) => r.code)).toEqual(["velocity"]);
    expect(a.reasons[0]?.message).toBe("4 orders within 60s exceed the limit of 3");
  });

  it("declines a blocked customer", () => {
    expect(assess({ customerId: "mallory", total: usd(1n) }, 1, rules).reasons.map((r) => r.code)).toEqual(["blocked_customer"]);
  });

  it("gives a reason for every rule that fails", () => {
    const a = assess({ customerId: "mallory", total: usd(9_999_999n) }, 10, rules);
    expect(a.decision).toBe(Decision.DECLINE);
    expect(a.reasons.map((r) => r.code)).toEqual(["blocked_customer", "amount_limit", "velocity"]);
  });

  it("skips velocity when the count is unknown (Redis down: fail open)", () => {
    expect(assess({ customerId: "alice", total: usd(100n) }, undefined, rules).decision).toBe(Decision.APPROVE);
  });

  it("declines an order without a total", () => {
    expect(assess({ customerId: "alice", total: undefined }, 1, rules).reasons.map((r) => r.code)).toEqual(["missing_total"]);
  });
});

describe("formatMoney", () => {
  it("formats minor units exactly in the currency's digits", () => {
    expect(formatMoney(12345n, "USD")).toBe("$123.45");
    expect(formatMoney(5n, "EUR")).toBe("€0.05");
    expect(formatMoney(1500n, "JPY")).toBe("¥1,500");
    expect(formatMoney(9_223_372_036_854_775_807n, "USD")).toBe("$92,233,720,368,547,758.07");
    expect(formatMoney(12345n, "ZZZ")).toMatch(/123\.45/);
  });
});
