import { Code, ConnectError } from "@connectrpc/connect";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import type { PoolClient } from "../../platform/db.js";
import { abandon } from "./orchestrator.js";
import { advance, type Change, lockOrder, type SagaOrder, type SagaTiming } from "./state.js";

/**
 * What cancelling does in each state: before anything is held or asked for the
 * order is simply CANCELLED; otherwise it is CANCELLING until stock is released
 * and any charge refunded. A refund or release may overtake the step it undoes:
 * the participants' tombstones make the late step a no-op.
 */
export function cancellation(order: SagaOrder, reason: string): Change | "unchanged" {
  const why = reason || "cancelled by request";
  const beingRejected = () => new ConnectError(`order ${order.orderId} is already being rejected: ${order.reason}`, Code.FailedPrecondition);
  switch (order.status) {
    case OrderStatus.PENDING:
    case OrderStatus.FRAUD_APPROVED:
    case OrderStatus.STOCK_RESERVED:
      // Already failing (a step said no or ran out of time): what it holds is being given back, to REJECTED.
      if (order.compensateTo !== undefined) throw beingRejected();
      return abandon(order, { reason: why, compensateTo: OrderStatus.CANCELLED, status: OrderStatus.CANCELLING });
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
