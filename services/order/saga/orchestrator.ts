import { isMessage, type Message } from "@bufbuild/protobuf";
import { Decision, FraudAssessedSchema } from "../../../gen/orderflow/fraud/v1/fraud_pb.js";
import { StockCommittedSchema, StockReleasedSchema, StockReservationFailedSchema, StockReservedSchema } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import { PaymentChargedSchema, PaymentDeclinedSchema, PaymentRefundedSchema } from "../../../gen/orderflow/payment/v1/payment_pb.js";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import type { Change, SagaOrder } from "./state.js";

/** A participant's reply, reduced to what the state machine needs. */
export type Reply =
  | { kind: "fraud"; approved: boolean; reason: string }
  | { kind: "reserved" }
  | { kind: "reservationFailed"; reason: string }
  | { kind: "charged" }
  | { kind: "declined"; reason: string }
  | { kind: "committed" }
  | { kind: "released" }
  | { kind: "refunded" };

export function readReply(message: Message): { orderId: string; reply: Reply } | undefined {
  if (isMessage(message, FraudAssessedSchema)) return { orderId: message.orderId, reply: { kind: "fraud", approved: message.decision === Decision.APPROVE, reason: message.reasons.join("; ") } };
  if (isMessage(message, StockReservedSchema)) return { orderId: message.orderId, reply: { kind: "reserved" } };
  if (isMessage(message, StockReservationFailedSchema)) return { orderId: message.orderId, reply: { kind: "reservationFailed", reason: message.reason } };
  if (isMessage(message, StockCommittedSchema)) return { orderId: message.orderId, reply: { kind: "committed" } };
  if (isMessage(message, StockReleasedSchema)) return { orderId: message.orderId, reply: { kind: "released" } };
  if (isMessage(message, PaymentChargedSchema)) return { orderId: message.orderId, reply: { kind: "charged" } };
  if (isMessage(message, PaymentDeclinedSchema)) return { orderId: message.orderId, reply: { kind: "declined", reason: message.reason } };
  if (isMessage(message, PaymentRefundedSchema)) return { orderId: message.orderId, reply: { kind: "refunded" } };
  return undefined;
}

/**
 * The state machine: what a reply does to an order in its current state.
 * Undefined means the reply is stale or a duplicate and changes nothing.
 *
 * A new order awaits the fraud check and the stock reservation together (see `sagaStart`);
 * the charge starts once both passed. Its public status still moves forward one step at a
 * time: a reservation that answers first is noted while the order stays PENDING, and the
 * fraud approval that follows passes FRAUD_APPROVED on its way to STOCK_RESERVED. Stock held
 * or still being reserved when the order fails is released before it is REJECTED.
 */
export function decide(order: SagaOrder, reply: Reply): Change | undefined {
  const awaits = (step: SagaOrder["awaiting"][number]) => order.awaiting.includes(step);
  const checking = order.status === OrderStatus.PENDING && awaits("fraud");
  switch (reply.kind) {
    case "fraud":
      if (!checking) return undefined;
      if (!reply.approved) return failWhileChecking(order, `fraud check declined: ${reply.reason}`);
      if (order.stockReserved)
        return { via: { status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed" }, status: OrderStatus.STOCK_RESERVED, reason: "stock reserved", done: ["fraud"], start: ["charge"] };
      // An order placed before the steps ran side by side asks for its stock only now.
      return { status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"], ...(awaits("reserve") ? {} : { start: ["reserve"] }) };
    case "reserved":
      if (checking && awaits("reserve")) return { done: ["reserve"], stockReserved: true };
      if (order.status !== OrderStatus.FRAUD_APPROVED || !awaits("reserve")) return undefined;
      return { status: OrderStatus.STOCK_RESERVED, reason: "stock reserved", done: ["reserve"], start: ["charge"], stockReserved: true };
    case "reservationFailed":
      // A fraud answer still to come changes nothing once the order is rejected.
      if (checking && awaits("reserve")) return { status: OrderStatus.REJECTED, reason: reply.reason, done: ["reserve", "fraud"] };
      if (order.status !== OrderStatus.FRAUD_APPROVED || !awaits("reserve")) return undefined;
      return { status: OrderStatus.REJECTED, reason: reply.reason, done: ["reserve"] };
    case "charged":
      if (order.status !== OrderStatus.STOCK_RESERVED || !awaits("charge")) return undefined;
      // Inventory commits the stock on the order.evt.confirmed this sends: no command, no reply.
      return { status: OrderStatus.CONFIRMED, reason: "payment charged", done: ["charge"] };
    case "declined":
      if (order.status !== OrderStatus.STOCK_RESERVED || !awaits("charge")) return undefined;
      return { reason: `payment declined: ${reply.reason}`, done: ["charge"], start: ["release"], compensateTo: OrderStatus.REJECTED };
    case "committed":
      // Sent by inventory before commits went unanswered; an order awaiting one was
      // moved on by migration 1700000000003.
      return undefined;
    case "released":
      return awaits("release") ? { done: ["release"] } : undefined;
    case "refunded":
      return awaits("refund") ? { done: ["refund"] } : undefined;
  }
}

/** Whether a PENDING order's stock is held or being reserved (and so needs a release if it ends now). */
export function stockMayBeHeld(order: SagaOrder): boolean {
  return order.stockReserved || order.awaiting.includes("reserve");
}

/**
 * How a PENDING order fails while its stock may be held or on its way: the release goes out
 * at once (overtaking a reservation still in flight, which inventory's tombstone then refuses)
 * and the order is REJECTED once it is confirmed. Shared by a fraud decline and a fraud check
 * that timed out.
 */
export function failWhileChecking(order: SagaOrder, reason: string): Change {
  if (!stockMayBeHeld(order)) return { status: OrderStatus.REJECTED, reason, done: ["fraud"] };
  return { reason, done: ["fraud", "reserve"], start: ["release"], compensateTo: OrderStatus.REJECTED };
}
