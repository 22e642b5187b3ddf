import { NotificationKind } from "../../gen/orderflow/notification/v1/notification_pb.js";
import type { OrderConcluded } from "../../gen/orderflow/order/v1/events_pb.js";
import { OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { formatMoney } from "../platform/money.js";

/** How a kind is stored (the column `kind`). */
export type KindName = "order_confirmed" | "order_rejected" | "order_cancelled";

export const kindNames: Record<KindName, NotificationKind> = {
  order_confirmed: NotificationKind.ORDER_CONFIRMED,
  order_rejected: NotificationKind.ORDER_REJECTED,
  order_cancelled: NotificationKind.ORDER_CANCELLED,
};

export function isKindName(value: string): value is KindName {
  return Object.hasOwn(kindNames, value);
}

/** The notification kind of a terminal order status; undefined for a status that is not an outcome. */
export function kindOf(status: OrderStatus): KindName | undefined {
  switch (status) {
    case OrderStatus.CONFIRMED:
      return "order_confirmed";
    case OrderStatus.REJECTED:
      return "order_rejected";
    case OrderStatus.CANCELLED:
      return "order_cancelled";
    default:
      return undefined;
  }
}

const maxReasonLength = 200;

/** The text a customer reads: "Your order 1234abcd… for $123.45 is confirmed". */
export function outcomeMessage(event: OrderConcluded, kind: KindName): string {
  const id = event.orderId.length > 8 ? `${event.orderId.slice(0, 8)}…` : event.orderId;
  const amount = event.total ? ` for ${formatMoney(event.total.amountMinor, event.total.currency)}` : "";
  const reason = event.reason.length > maxReasonLength ? `${event.reason.slice(0, maxReasonLength)}…` : event.reason;
  switch (kind) {
    case "order_confirmed":
      return `Your order ${id}${amount} is confirmed`;
    case "order_rejected":
      return `Your order ${id}${amount} was rejected${reason ? `: ${reason}` : ""}`;
    case "order_cancelled":
      return `Your order ${id}${amount} was cancelled${reason ? `: ${reason}` : ""}`;
  }
}
