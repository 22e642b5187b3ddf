import { OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import type { SagaOrder } from "../../services/order/saga/state.js";

/** A new order as the saga sees it (PENDING, nothing answered yet), with `fields` set. */
export function sagaOrder(fields: Partial<SagaOrder> = {}): SagaOrder {
  return {
    orderId: "o",
    customerId: "c",
    status: OrderStatus.PENDING,
    version: 1n,
    totalMinor: 100n,
    currency: "USD",
    awaiting: [],
    attempts: 1,
    compensateTo: undefined,
    reason: "",
    createdAt: new Date(0),
    stepStartedAt: new Date(0),
    stockReserved: false,
    charged: false,
    lines: [],
    revision: "1",
    ...fields,
  };
}
