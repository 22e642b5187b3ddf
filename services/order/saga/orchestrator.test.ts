import { describe, expect, it } from "vitest";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { decide, type Reply } from "./orchestrator.js";
import { planAdvance, type SagaOrder } from "./state.js";
import { sagaOrder } from "../../../test/support/saga-order.js";

function order(status: OrderStatus, awaiting: SagaOrder["awaiting"], held: Partial<Pick<SagaOrder, "stockReserved" | "charged" | "compensateTo">> = {}): SagaOrder {
  return sagaOrder({ status, awaiting, ...held });
}

const approved = { kind: "fraud", approved: true, reason: "" } as const;
const blocked = { kind: "fraud", approved: false, reason: "blocked" } as const;
const reserved = { kind: "reserved" } as const;
const charged = { kind: "charged" } as const;
const outOfStock = { kind: "reservationFailed", reason: "out of stock: A" } as const;
const noFunds = { kind: "declined", reason: "insufficient funds" } as const;

/** Applies replies in turn to a new order placed with every step side by side; the statuses it passed and where it ended. */
function run(...replies: Reply[]): { passed: string[]; order: SagaOrder } {
  let current = order(OrderStatus.PENDING, ["fraud", "reserve", "charge"]);
  const passed: string[] = [];
  for (const reply of replies) {
    const change = decide(current, reply);
    if (!change) continue;
    const advance = planAdvance(current, change);
    passed.push(...advance.transitions.filter((t) => t.statusChanged).map((t) => t.status));
    current = advance.order;
  }
  return { passed, order: current };
}

/** Every order in which the three forward answers can arrive. */
const arrivals: Reply[][] = [
  [approved, reserved, charged],
  [approved, charged, reserved],
  [reserved, approved, charged],
  [reserved, charged, approved],
  [charged, approved, reserved],
  [charged, reserved, approved],
];

describe("saga state machine", () => {
  describe("a new order awaits the fraud check, the reservation and the charge together", () => {
    it.each(arrivals.map((replies) => [replies.map((r) => r.kind).join(", "), replies] as const))("%s: passes FRAUD_APPROVED and STOCK_RESERVED to CONFIRMED, awaiting nothing", (_, replies) => {
      const { passed, order: done } = run(...replies);
      expect(passed).toEqual(["FRAUD_APPROVED", "STOCK_RESERVED", "CONFIRMED"]);
      expect(done).toMatchObject({ status: OrderStatus.CONFIRMED, reason: "payment charged", awaiting: [], version: 4n, stockReserved: true, charged: true });
    });

    it("an early answer is noted while the status waits for the fraud check", () => {
      const placed = order(OrderStatus.PENDING, ["fraud", "reserve", "charge"]);
      expect(decide(placed, reserved)).toEqual({ done: ["reserve"], stockReserved: true });
      expect(decide(placed, charged)).toEqual({ done: ["charge"], charged: true });
      expect(decide(placed, approved)).toEqual({ status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"] });
    });

    it("the answer that completes the order passes every status it completes, nothing started", () => {
      expect(decide(order(OrderStatus.PENDING, ["fraud"], { stockReserved: true, charged: true }), approved)).toEqual({
        status: OrderStatus.CONFIRMED,
        reason: "payment charged",
        via: [
          { status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed" },
          { status: OrderStatus.STOCK_RESERVED, reason: "stock reserved" },
        ],
        done: ["fraud"],
      });
      expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"], { charged: true }), reserved)).toEqual({
        status: OrderStatus.CONFIRMED,
        reason: "payment charged",
        via: [{ status: OrderStatus.STOCK_RESERVED, reason: "stock reserved" }],
        done: ["reserve"],
        stockReserved: true,
      });
    });

    it("a fraud decline gives back what may be held or on its way — stock and money — and rejects once both are back", () => {
      const giveBack = { reason: "fraud check declined: blocked", done: ["fraud", "reserve", "charge"], start: ["release", "refund"], compensateTo: OrderStatus.REJECTED };
      expect(decide(order(OrderStatus.PENDING, ["fraud", "reserve", "charge"]), blocked)).toEqual(giveBack);
      expect(decide(order(OrderStatus.PENDING, ["fraud"], { stockReserved: true, charged: true }), blocked)).toEqual({ ...giveBack, done: ["fraud"] });
      const { passed, order: rejected } = run(charged, blocked, reserved, { kind: "refunded" }, { kind: "released" });
      expect(passed).toEqual(["REJECTED"]);
      expect(rejected).toMatchObject({ status: OrderStatus.REJECTED, reason: "fraud check declined: blocked", awaiting: [] });
    });

    it("a failed reservation refunds the charge taken or on its way; nothing to release", () => {
      expect(decide(order(OrderStatus.PENDING, ["fraud", "reserve", "charge"]), outOfStock)).toEqual({
        reason: "out of stock: A",
        done: ["fraud", "reserve", "charge"],
        start: ["refund"],
        compensateTo: OrderStatus.REJECTED,
      });
      expect(run(approved, outOfStock, approved, charged, { kind: "refunded" })).toMatchObject({ passed: ["FRAUD_APPROVED", "REJECTED"], order: { awaiting: [] } });
    });

    it("a declined charge releases the stock held or on its way; nothing to refund", () => {
      expect(decide(order(OrderStatus.PENDING, ["fraud", "reserve", "charge"]), noFunds)).toEqual({
        reason: "payment declined: insufficient funds",
        done: ["fraud", "reserve", "charge"],
        start: ["release"],
        compensateTo: OrderStatus.REJECTED,
      });
      expect(run(reserved, noFunds, approved, { kind: "released" })).toMatchObject({ passed: ["REJECTED"], order: { reason: "payment declined: insufficient funds" } });
    });

    it("a failure with nothing held or on its way rejects at once", () => {
      expect(decide(order(OrderStatus.PENDING, ["fraud", "reserve"]), outOfStock)).toEqual({ status: OrderStatus.REJECTED, reason: "out of stock: A", done: ["fraud", "reserve"] });
      expect(decide(order(OrderStatus.PENDING, ["fraud", "charge"]), noFunds)).toEqual({ status: OrderStatus.REJECTED, reason: "payment declined: insufficient funds", done: ["fraud", "charge"] });
    });

    it("the first failure decides the reason; later answers change nothing but the give-back", () => {
      expect(run(noFunds, outOfStock, approved, { kind: "released" })).toMatchObject({ passed: ["REJECTED"], order: { reason: "payment declined: insufficient funds", awaiting: [] } });
    });

    it("answers to an order being given back change nothing but the give-back", () => {
      const givingBack = order(OrderStatus.PENDING, ["release", "refund"], { compensateTo: OrderStatus.REJECTED });
      for (const late of [approved, blocked, reserved, outOfStock, charged, noFunds]) expect(decide(givingBack, late)).toBeUndefined();
      expect(decide(givingBack, { kind: "released" })).toEqual({ done: ["release"] });
      expect(decide(givingBack, { kind: "refunded" })).toEqual({ done: ["refund"] });
    });
  });

  describe("orders placed with fewer steps side by side (a rolling upgrade's settings, or before them)", () => {
    it("fraud and reservation side by side: the charge starts once both passed", () => {
      expect(decide(order(OrderStatus.PENDING, ["fraud", "reserve"]), approved)).toEqual({ status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"] });
      expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"]), reserved)).toEqual({ status: OrderStatus.STOCK_RESERVED, reason: "stock reserved", done: ["reserve"], stockReserved: true, start: ["charge"] });
      expect(decide(order(OrderStatus.PENDING, ["fraud"], { stockReserved: true }), approved)).toEqual({
        status: OrderStatus.STOCK_RESERVED,
        reason: "stock reserved",
        via: [{ status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed" }],
        done: ["fraud"],
        start: ["charge"],
      });
    });

    it("one step at a time: the reservation once the fraud check passed, the charge once the stock is held", () => {
      expect(decide(order(OrderStatus.PENDING, ["fraud"]), approved)).toEqual({ status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"], start: ["reserve"] });
      expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"]), reserved)).toMatchObject({ status: OrderStatus.STOCK_RESERVED, start: ["charge"] });
      // The confirmation awaits nothing and sends no command: inventory commits the stock on order.evt.confirmed.
      expect(decide(order(OrderStatus.STOCK_RESERVED, ["charge"]), charged)).toEqual({ status: OrderStatus.CONFIRMED, reason: "payment charged", done: ["charge"], charged: true });
      expect(decide(order(OrderStatus.PENDING, ["fraud"]), blocked)).toEqual({ status: OrderStatus.REJECTED, reason: "fraud check declined: blocked", done: ["fraud"] });
      expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"]), outOfStock)).toEqual({ status: OrderStatus.REJECTED, reason: "out of stock: A", done: ["reserve"] });
    });

    it("charge alongside, reservation after the fraud check: the reservation starts once the check passed, whether or not the charge answered", () => {
      expect(decide(order(OrderStatus.PENDING, ["fraud", "charge"]), approved)).toEqual({ status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"], start: ["reserve"] });
      expect(decide(order(OrderStatus.PENDING, ["fraud"], { charged: true }), approved)).toEqual({ status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"], start: ["reserve"] });
      expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve", "charge"]), reserved)).toEqual({ status: OrderStatus.STOCK_RESERVED, reason: "stock reserved", done: ["reserve"], stockReserved: true });
      expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"], { charged: true }), reserved)).toMatchObject({ status: OrderStatus.CONFIRMED });
    });

    it("a declined charge releases the stock before rejecting", () => {
      expect(decide(order(OrderStatus.STOCK_RESERVED, ["charge"]), noFunds)).toEqual({
        reason: "payment declined: insufficient funds",
        done: ["charge"],
        start: ["release"],
        compensateTo: OrderStatus.REJECTED,
      });
    });
  });

  it("ignores duplicate and late replies", () => {
    expect(decide(order(OrderStatus.FRAUD_APPROVED, ["reserve"]), approved)).toBeUndefined();
    expect(decide(order(OrderStatus.CONFIRMED, []), charged)).toBeUndefined();
    expect(decide(order(OrderStatus.CONFIRMED, []), { kind: "committed" })).toBeUndefined();
    expect(decide(order(OrderStatus.CANCELLED, []), reserved)).toBeUndefined();
    expect(decide(order(OrderStatus.CANCELLING, ["refund"]), { kind: "released" })).toBeUndefined();
    // An order service before the charge ran alongside rejected an out-of-stock order with the charge still listed.
    expect(decide(order(OrderStatus.REJECTED, ["charge"]), charged)).toBeUndefined();
    expect(decide(order(OrderStatus.REJECTED, ["charge"]), noFunds)).toBeUndefined();
    expect(decide(order(OrderStatus.CONFIRMED, ["reserve"]), reserved)).toBeUndefined();
  });
});
