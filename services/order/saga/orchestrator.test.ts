import { describe, expect, it } from "vitest";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { decide } from "./orchestrator.js";
import type { SagaOrder } from "./state.js";

function order(status: OrderStatus, awaiting: SagaOrder["awaiting"]): SagaOrder {
  return { orderId: "o", customerId: "c", status, version: 1n, totalMinor: 100n, currency: "USD", awaiting, attempts: 1, compensateTo: undefined, reason: "", createdAt: new Date(), stepStartedAt: new Date(), lines: [], revision: "1" };
}

describe("saga state machine", () => {
  it("walks the happy path one step at a time", () => {
    expect(decide(order(OrderStatus.PENDING, ["fraud"]), { kind: "fraud", approved: true, reason: "" })).toMatchObject({ status: OrderStatus.FRAUD_APPROVED, done: ["fraud"], start: ["reserve"] });
    expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"]), { kind: "reserved" })).toMatchObject({ status: OrderStatus.STOCK_RESERVED, start: ["charge"] });
    // The confirmation awaits nothing and sends no command: inventory commits the stock on order.evt.confirmed.
    expect(decide(order(OrderStatus.STOCK_RESERVED, ["charge"]), { kind: "charged" })).toEqual({ status: OrderStatus.CONFIRMED, reason: "payment charged", done: ["charge"] });
    expect(decide(order(OrderStatus.CONFIRMED, []), { kind: "committed" })).toBeUndefined();
  });

  it("rejects on a fraud decline or missing stock without compensation", () => {
    expect(decide(order(OrderStatus.PENDING, ["fraud"]), { kind: "fraud", approved: false, reason: "blocked" })).toEqual({ status: OrderStatus.REJECTED, reason: "fraud check declined: blocked", done: ["fraud"] });
    expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"]), { kind: "reservationFailed", reason: "out of stock: KB-001" })).toMatchObject({ status: OrderStatus.REJECTED });
  });

  it("releases stock before rejecting a declined payment", () => {
    expect(decide(order(OrderStatus.STOCK_RESERVED, ["charge"]), { kind: "declined", reason: "insufficient funds" })).toEqual({
      reason: "payment declined: insufficient funds",
      done: ["charge"],
      start: ["release"],
      compensateTo: OrderStatus.REJECTED,
    });
  });

  it("ignores duplicate and late replies", () => {
    expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"]), { kind: "fraud", approved: true, reason: "" })).toBeUndefined();
    expect(decide(order(OrderStatus.CONFIRMED, []), { kind: "charged" })).toBeUndefined();
    expect(decide(order(OrderStatus.CANCELLED, []), { kind: "reserved" })).toBeUndefined();
    expect(decide(order(OrderStatus.CANCELLING, ["refund"]), { kind: "released" })).toBeUndefined();
  });
});
