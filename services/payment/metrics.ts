import { counter, histogram, latencyBuckets } from "../platform/metrics.js";

/** Payment outcomes and money moved, registered once in prom-client's default registry. */
export const paymentMetrics = {
  /** outcome: charged | declined | refunded | cancelled_before_charge (a refund left a tombstone); reason: the decline reason ("" otherwise). */
  payments: counter("orderflow_payments_total", "Payments by outcome (charged, declined by reason, refunded)", ["outcome", "reason"]),
  /** kind: topup | charge | refund. Minor units of the currency. */
  moneyMoved: counter("orderflow_payment_money_moved_minor_total", "Money moved between wallets and orders, in minor units", ["kind", "currency"]),
  /** command: charge | refund. */
  commandSeconds: histogram("orderflow_payment_command_seconds", "Time to apply a saga command inside its transaction (a consumer batch's charges are applied together: one observation)", ["command"], latencyBuckets),
};
