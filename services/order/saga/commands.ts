import { create } from "@bufbuild/protobuf";
import { AssessFraudSchema } from "../../../gen/orderflow/fraud/v1/fraud_pb.js";
import { ReleaseStockSchema, ReserveStockSchema } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import { OrderConcludedSchema } from "../../../gen/orderflow/order/v1/events_pb.js";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { ChargePaymentSchema, RefundPaymentSchema } from "../../../gen/orderflow/payment/v1/payment_pb.js";
import { money } from "../../platform/money.js";
import type { Reply } from "../../platform/saga-participant.js";
import type { SagaOrder } from "./state.js";

/** The steps of the saga: each the reply it waits for and the command that asks for it. */
export const steps = ["fraud", "reserve", "charge", "release", "refund"] as const;
export type Step = (typeof steps)[number];

/** The steps that move an order on (the others undo them). */
export const forwardSteps: ReadonlySet<Step> = new Set(["fraud", "reserve", "charge"]);

/** The domain whose participant performs a step. */
export function stepDomain(step: Step): "fraud" | "inventory" | "payment" {
  switch (step) {
    case "fraud":
      return "fraud";
    case "reserve":
    case "release":
      return "inventory";
    case "charge":
    case "refund":
      return "payment";
  }
}

/** What a step's command says of its order. */
export type CommandedOrder = Pick<SagaOrder, "orderId" | "customerId" | "totalMinor" | "currency" | "lines">;

/** The command that performs a step for the order. */
export function commandFor(step: Step, order: CommandedOrder): Reply {
  const { orderId, customerId } = order;
  const total = money(order.totalMinor, order.currency);
  switch (step) {
    case "fraud":
      return { subject: "fraud.cmd.assess", message: create(AssessFraudSchema, { orderId, customerId, total }) };
    case "reserve":
      return { subject: "inventory.cmd.reserve", message: create(ReserveStockSchema, { orderId, lines: order.lines }) };
    case "charge":
      return { subject: "payment.cmd.charge", message: create(ChargePaymentSchema, { orderId, customerId, amount: total }) };
    case "release":
      return { subject: "inventory.cmd.release", message: create(ReleaseStockSchema, { orderId }) };
    case "refund":
      return { subject: "payment.cmd.refund", message: create(RefundPaymentSchema, { orderId }) };
  }
}

const concludedSubjects: Partial<Record<OrderStatus, string>> = {
  [OrderStatus.CONFIRMED]: "order.evt.confirmed",
  [OrderStatus.REJECTED]: "order.evt.rejected",
  [OrderStatus.CANCELLED]: "order.evt.cancelled",
};

/** The public event of an order reaching a terminal status. */
export function concludedEvent(order: SagaOrder, status: OrderStatus, reason: string): Reply {
  const subject = concludedSubjects[status];
  if (!subject) throw new Error(`status ${OrderStatus[status]} is not terminal`);
  return {
    subject,
    message: create(OrderConcludedSchema, { orderId: order.orderId, customerId: order.customerId, status, total: money(order.totalMinor, order.currency), reason }),
  };
}
