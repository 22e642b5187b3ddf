import { describe, expect, it } from "vitest";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { decide } from "./orchestrator.js";
import type { SagaOrder } from "./state.js";

function order(status: OrderStatus, awaiting: SagaOrder["awaiting"], held: Partial<Pick<SagaOrder, "stockReserved" | "compensateTo">> = {}): SagaOrder {
  return { orderId: "o", customerId: "c", status, version: 1n, totalMinor: 100n, currency: "USD", awaiting, attempts: 1, compensateTo: undefined, reason: "", createdAt: new Date(), stepStartedAt: new Date(), stockReserved: false, lines: [], revision: "1", ...held };
}

const approved = { kind: "fraud", approved: true, reason: "" } as const;
const blocked = { kind: "fraud", approved: false, reason: "blocked" } as const;

describe("saga state machine", () => {
  describe("a new order awaits the fraud check and the reservation together", () => {
    const placed = () => order(OrderStatus.PENDING, ["fraud", "reserve"]);
    const stockHeld = () => order(OrderStatus.PENDING, ["fraud"], { stockReserved: true });

    it("fraud first: FRAUD_APPROVED, still awaiting the stock, nothing started", () => {
      expect(decide(placed(), approved)).toEqual({ status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"] });
    });

    it("stock first: noted while PENDING; the approval then passes FRAUD_APPROVED to STOCK_RESERVED and starts the charge", () => {
      expect(decide(placed(), { kind: "reserved" })).toEqual({ done: ["reserve"], stockReserved: true });
      expect(decide(stockHeld(), approved)).toEqual({
        via: { status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed" },
        status: OrderStatus.STOCK_RESERVED,
        reason: "stock reserved",
        done: ["fraud"],
        start: ["charge"],
      });
    });

    it("a fraud decline releases what may be held, before or after the reservation answered, and rejects once released", () => {
      const releaseThenReject = { reason: "fraud check declined: blocked", done: ["fraud", "reserve"], start: ["release"], compensateTo: OrderStatus.REJECTED };
      expect(decide(placed(), blocked)).toEqual(releaseThenReject);
      expect(decide(stockHeld(), blocked)).toEqual(releaseThenReject);
      const releasing = order(OrderStatus.PENDING, ["release"], { compensateTo: OrderStatus.REJECTED });
      expect(decide(releasing, { kind: "reserved" })).toBeUndefined();
      expect(decide(releasing, { kind: "reservationFailed", reason: "out of stock: A" })).toBeUndefined();
      expect(decide(releasing, approved)).toBeUndefined();
      expect(decide(releasing, { kind: "released" })).toEqual({ done: ["release"] });
    });

    it("a failed reservation rejects at once; the fraud answer that follows changes nothing", () => {
      expect(decide(placed(), { kind: "reservationFailed", reason: "out of stock: A" })).toEqual({ status: OrderStatus.REJECTED, reason: "out of stock: A", done: ["reserve", "fraud"] });
      expect(decide(order(OrderStatus.REJECTED, []), approved)).toBeUndefined();
      expect(decide(order(OrderStatus.REJECTED, []), blocked)).toBeUndefined();
    });

    it("an order placed before the steps ran side by side asks for its stock after the fraud check, as it always did", () => {
      expect(decide(order(OrderStatus.PENDING, ["fraud"]), approved)).toEqual({ status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"], start: ["reserve"] });
      expect(decide(order(OrderStatus.PENDING, ["fraud"]), blocked)).toEqual({ status: OrderStatus.REJECTED, reason: "fraud check declined: blocked", done: ["fraud"] });
    });
  });

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
