import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Order } from "../../../gen/orderflow/order/v1/order_pb.js";
import type { SagaStart } from "../store.js";
import { commandFor, type Step } from "./commands.js";
import type { InFlightOrders } from "./in-flight.js";
import { ordersSchema, type SagaOrder, type SagaTiming } from "./state.js";

export interface SagaStartOptions extends SagaTiming {
  /**
   * Whether the reservation starts with the fraud check (default) or once it passed. Neither
   * needs the other's answer, so by default the order awaits both and the charge waits for
   * both (see `decide`). Off, new orders are placed as order services before this one placed
   * them — what their replicas, still running during a rolling upgrade, can handle.
   */
  reserveDuringFraudCheck?: boolean;
}

/** A new order as its saga starts: awaiting the first steps. */
function startedOrder(order: Order, revision: string, firstSteps: Step[]): SagaOrder {
  const created = order.createdAt ? timestampDate(order.createdAt) : new Date();
  return {
    orderId: order.orderId,
    customerId: order.customerId,
    status: order.status,
    version: order.version,
    totalMinor: order.total?.amountMinor ?? 0n,
    currency: order.total?.currency ?? "",
    awaiting: firstSteps,
    attempts: 1,
    compensateTo: undefined,
    reason: order.statusReason,
    createdAt: created,
    stepStartedAt: created,
    stockReserved: false,
    lines: order.items.map((i) => ({ sku: i.sku, quantity: i.quantity })),
    revision,
  };
}

/**
 * Every new order starts the saga by asking fraud and inventory, in the statement that
 * creates it; the orders created are remembered in `inFlight`, so their first replies
 * need no read.
 */
export function sagaStart(options: SagaStartOptions, inFlight?: InFlightOrders): SagaStart {
  const firstSteps: Step[] = options.reserveDuringFraudCheck === false ? ["fraud"] : ["fraud", "reserve"];
  return {
    awaiting: firstSteps,
    stepTimeoutMs: options.stepTimeoutMs,
    outboxSchema: ordersSchema,
    commands: (orderId, { customerId, priced }) => {
      const order = { orderId, customerId, totalMinor: priced.totalMinor, currency: priced.currency, lines: priced.lines.map(({ sku, quantity }) => ({ sku, quantity })) };
      return firstSteps.map((step) => ({ ...commandFor(step, order), key: orderId }));
    },
    ...(inFlight ? { started: (order: Order, revision: string) => inFlight.remember(startedOrder(order, revision, firstSteps)) } : {}),
  };
}
