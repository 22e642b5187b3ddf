import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";

/** Statuses are stored by name ("PENDING"), the enum value's suffix. */
export function statusName(status: OrderStatus): string {
  return OrderStatus[status];
}

export function statusFromName(name: string): OrderStatus {
  const value = OrderStatus[name as keyof typeof OrderStatus];
  if (value === undefined) throw new Error(`unknown order status ${name}`);
  return value;
}

export const terminalStatuses: ReadonlySet<OrderStatus> = new Set([OrderStatus.CONFIRMED, OrderStatus.REJECTED, OrderStatus.CANCELLED]);

export function isTerminal(status: OrderStatus): boolean {
  return terminalStatuses.has(status);
}
