import { Decision } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { formatMoney } from "../platform/money.js";

/** The rules an order is checked against (from the environment, see config.ts). */
export interface FraudRules {
  maxOrderAmountMinor: bigint;
  velocityMaxOrders: number;
  velocityWindowSeconds: number;
  blockedCustomers: ReadonlySet<string>;
}

/** What is assessed: the order's customer and total. */
export interface OrderFacts {
  customerId: string;
  /** Undefined when the command carried no total. */
  total: { amountMinor: bigint; currency: string } | undefined;
}

/** Stable, low-cardinality code of a rule (metric label) with a human explanation (sent in replies). */
export type ReasonCode = "amount_limit" | "velocity" | "blocked_customer" | "missing_total";

export interface Reason {
  code: ReasonCode;
  message: string;
}

export interface Assessment {
  decision: Decision.APPROVE | Decision.DECLINE;
  /** Every rule the order fails, in a fixed order; empty when approved. */
  reasons: Reason[];
}

/**
 * Pure risk assessment. `velocityCount` is the number of the customer's orders in the
 * window counting this one, or undefined when it could not be read (Redis down: the
 * velocity rule is skipped, fail open). Every failing rule adds a reason; any reason declines.
 */
export function assess(order: OrderFacts, velocityCount: number | undefined, rules: FraudRules): Assessment {
  const reasons: Reason[] = [];
  if (rules.blockedCustomers.has(order.customerId)) {
    reasons.push({ code: "blocked_customer", message: `customer ${order.customerId} is blocked` });
  }
  if (order.total === undefined) {
    reasons.push({ code: "missing_total", message: "the order has no total" });
  } else if (order.total.amountMinor > rules.maxOrderAmountMinor) {
    const { amountMinor, currency } = order.total;
    reasons.push({
      code: "amount_limit",
      message: `order total ${formatMoney(amountMinor, currency)} exceeds the limit of ${formatMoney(rules.maxOrderAmountMinor, currency)}`,
    });
  }
  if (velocityCount !== undefined && velocityCount > rules.velocityMaxOrders) {
    reasons.push({
      code: "velocity",
      message: `${velocityCount} orders within ${rules.velocityWindowSeconds}s exceed the limit of ${rules.velocityMaxOrders}`,
    });
  }
  return { decision: reasons.length === 0 ? Decision.APPROVE : Decision.DECLINE, reasons };
}
