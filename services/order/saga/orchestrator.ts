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
 */
export function decide(order: SagaOrder, reply: Reply): Change | undefined {
  const awaits = (step: SagaOrder["awaiting"][number]) => order.awaiting.includes(step);
  switch (reply.kind) {
    case "fraud":
      if (order.status !== OrderStatus.PENDING || !awaits("fraud")) return undefined;
      return reply.approved
        ? { status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", done: ["fraud"], start: ["reserve"] }
        : { status: OrderStatus.REJECTED, reason: `fraud check declined: ${reply.reason}`, done: ["fraud"] };
    case "reserved":
      if (order.status !== OrderStatus.FRAUD_APPROVED || !awaits("reserve")) return undefined;
      return { status: OrderStatus.STOCK_RESERVED, reason: "stock reserved", done: ["reserve"], start: ["charge"] };
    case "reservationFailed":
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
