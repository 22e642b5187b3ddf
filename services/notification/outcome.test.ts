import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { OrderConcludedSchema } from "../../gen/orderflow/order/v1/events_pb.js";
import { OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { money } from "../platform/money.js";
import { kindOf, outcomeMessage } from "./outcome.js";

const event = (status: OrderStatus, reason = "") =>
  create(OrderConcludedSchema, { orderId: "1234abcd-0000-4000-8000-000000000000", customerId: "alice", status, total: money(12345n, "USD"), reason });

describe("order outcomes", () => {
  it("maps terminal statuses to kinds and nothing else", () => {
    expect(kindOf(OrderStatus.CONFIRMED)).toBe("order_confirmed");
    expect(kindOf(OrderStatus.REJECTED)).toBe("order_rejected");
    expect(kindOf(OrderStatus.CANCELLED)).toBe("order_cancelled");
    expect(kindOf(OrderStatus.PENDING)).toBeUndefined();
    expect(kindOf(OrderStatus.CANCELLING)).toBeUndefined();
  });

  it("writes a human message", () => {
    expect(outcomeMessage(event(OrderStatus.CONFIRMED), "order_confirmed")).toBe("Your order 1234abcd… for $123.45 is confirmed");
    expect(outcomeMessage(event(OrderStatus.REJECTED, "insufficient funds"), "order_rejected")).toBe("Your order 1234abcd… for $123.45 was rejected: insufficient funds");
    expect(outcomeMessage(event(OrderStatus.CANCELLED), "order_cancelled")).toBe("Your order 1234abcd… for $123.45 was cancelled");
    expect(outcomeMessage(create(OrderConcludedSchema, { orderId: "o1", status: OrderStatus.CONFIRMED }), "order_confirmed")).toBe("Your order o1 is confirmed");
    expect(outcomeMessage(event(OrderStatus.REJECTED, "x".repeat(1000)), "order_rejected").length).toBeLessThan(300);
  });
});
