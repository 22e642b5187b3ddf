import { Code, ConnectError } from "@connectrpc/connect";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import type { PoolClient } from "../../platform/db.js";
import { stockMayBeHeld } from "./orchestrator.js";
import { advance, type Change, lockOrder, type SagaOrder, type SagaTiming } from "./state.js";

/**
 * What cancelling does in each state: before anything is held or asked for the
 * order is simply CANCELLED; otherwise it is CANCELLING until stock is released
 * and any charge refunded. A refund or release may overtake the step it undoes:
 * the participants' tombstones make the late step a no-op.
 */
function cancellation(order: SagaOrder, reason: string): Change | "unchanged" {
  const why = reason || "cancelled by request";
  const beingRejected = () => new ConnectError(`order ${order.orderId} is already being rejected: ${order.reason}`, Code.FailedPrecondition);
  switch (order.status) {
    case OrderStatus.PENDING:
      if (order.compensateTo !== undefined) throw beingRejected();
      if (stockMayBeHeld(order))
        return { status: OrderStatus.CANCELLING, reason: why, done: ["fraud", "reserve"], start: ["release"], compensateTo: OrderStatus.CANCELLED };
      return { status: OrderStatus.CANCELLED, reason: why, done: ["fraud"] };
    case OrderStatus.FRAUD_APPROVED:
      // A reservation that ran out of attempts: its release is under way, to REJECTED.
      if (order.compensateTo !== undefined) throw beingRejected();
      return { status: OrderStatus.CANCELLING, reason: why, done: ["reserve"], start: ["release"], compensateTo: OrderStatus.CANCELLED };
    case OrderStatus.STOCK_RESERVED:
      if (!order.awaiting.includes("charge")) throw beingRejected();
      return { status: OrderStatus.CANCELLING, reason: why, done: ["charge"], start: ["refund", "release"], compensateTo: OrderStatus.CANCELLED };
    case OrderStatus.CONFIRMED:
      return { status: OrderStatus.CANCELLING, reason: why, start: ["refund", "release"], compensateTo: OrderStatus.CANCELLED };
    case OrderStatus.CANCELLING:
    case OrderStatus.CANCELLED:
      return "unchanged";
    default:
      throw new ConnectError(`order ${order.orderId} is ${OrderStatus[order.status]} and cannot be cancelled`, Code.FailedPrecondition);
  }
}

/**
 * Cancels the order in the caller's transaction; cancelling twice is harmless.
 * `beforeChange` runs with the locked order just before a change is applied
 * (and may refuse it by throwing).
 */
export async function cancelOrder(tx: PoolClient, orderId: string, reason: string, timing: SagaTiming, beforeChange?: (order: SagaOrder) => Promise<void>): Promise<void> {
  const order = await lockOrder(tx, orderId);
  if (!order) throw new ConnectError(`order ${orderId} not found`, Code.NotFound);
  const change = cancellation(order, reason);
  if (change === "unchanged") return;
  await beforeChange?.(order);
  await advance(tx, order, change, timing);
}
