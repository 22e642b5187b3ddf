import type { SagaStart } from "../store.js";
import { assessFraud, type Step } from "./commands.js";
import { ordersSchema, type SagaTiming } from "./state.js";

const firstStep: Step = "fraud";

/** Every new order starts the saga by asking fraud, in the statement that creates it. */
export function sagaStart(timing: SagaTiming): SagaStart {
  return {
    awaiting: [firstStep],
    stepTimeoutMs: timing.stepTimeoutMs,
    outboxSchema: ordersSchema,
    commands: (order) => [
      { ...assessFraud({ orderId: order.orderId, customerId: order.customerId, totalMinor: order.total?.amountMinor ?? 0n, currency: order.total?.currency ?? "" }), key: order.orderId },
    ],
  };
}
