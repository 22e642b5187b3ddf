import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Order } from "../../../gen/orderflow/order/v1/order_pb.js";
import type { SagaStart } from "../store.js";
import { commandFor, type Step } from "./commands.js";
import type { InFlightOrders } from "./in-flight.js";
import { ordersSchema, type SagaOrder, type SagaTiming } from "./state.js";

export interface SagaStartOptions extends SagaTiming {
  /**
   * Whether the reservation starts with the fraud check (default) or once it passed. Neither
   * needs the other's answer, so by default the order awaits both (see `decide`). Off, new
   * orders are placed as order services before 2731651 placed them — what their replicas,
   * still running during a rolling upgrade, can handle.
   */
  reserveDuringFraudCheck?: boolean;
  /**
   * Whether the charge starts with the fraud check (default) or once the fraud check passed and
   * the stock is held. Off, new orders are placed as order services before this option placed
   * them (their replicas would not refund a charge taken for an order that fails), and no money
   * is held for an order that then fails.
   */
  chargeDuringChecks?: boolean;
}

/** The steps a new order starts with. */
function firstSteps(options: SagaStartOptions): Step[] {
  return ["fraud", ...(options.reserveDuringFraudCheck === false ? [] : (["reserve"] as const)), ...(options.chargeDuringChecks === false ? [] : (["charge"] as const))];
}

/** A new order as its saga starts: awaiting the first steps. */
function startedOrder(order: Order, revision: string, steps: Step[]): SagaOrder {
  const created = order.createdAt ? timestampDate(order.createdAt) : new Date();
  return {
    orderId: order.orderId,
    customerId: order.customerId,
    status: order.status,
    version: order.version,
    totalMinor: order.total?.amountMinor ?? 0n,
    currency: order.total?.currency ?? "",
    awaiting: steps,
    attempts: 1,
    compensateTo: undefined,
    reason: order.statusReason,
    createdAt: created,
    stepStartedAt: created,
    stockReserved: false,
    charged: false,
    lines: order.items.map((i) => ({ sku: i.sku, quantity: i.quantity })),
    revision,
  };
}

/**
 * Every new order starts the saga by sending its first steps' commands (by default fraud,
 * inventory and payment at once), in the statement that creates it; the orders created are
 * remembered in `inFlight`, so their first replies need no read.
 */
export function sagaStart(options: SagaStartOptions, inFlight?: InFlightOrders): SagaStart {
  const steps = firstSteps(options);
  return {
    awaiting: steps,
    stepTimeoutMs: options.stepTimeoutMs,
    outboxSchema: ordersSchema,
    commands: (orderId, { customerId, priced }) => {
      const order = { orderId, customerId, totalMinor: priced.totalMinor, currency: priced.currency, lines: priced.lines.map(({ sku, quantity }) => ({ sku, quantity })) };
      return steps.map((step) => ({ ...commandFor(step, order), key: orderId }));
    },
    ...(inFlight ? { started: (order: Order, revision: string) => inFlight.remember(startedOrder(order, revision, steps)) } : {}),
  };
}
