import { counter } from "../platform/metrics.js";

export const fraudMetrics = {
  /** Fresh assessments (a replayed saga decision is not counted again). */
  assessments: counter("fraud_assessments_total", "Orders assessed, by decision and mode (saga or dry_run)", ["decision", "mode"]),
  /** One increment per failing rule of a declined order. */
  declineReasons: counter("fraud_decline_reasons_total", "Rules that declined orders, by reason and mode", ["reason", "mode"]),
  replayedDecisions: counter("fraud_decisions_replayed_total", "Saga commands answered with the decision stored for the order", []),
  /** Redis unreachable: the velocity rule was skipped or the decision was not cached (fail open). */
  redisFailures: counter("fraud_redis_failures_total", "Redis operations that failed and were skipped, by operation", ["operation"]),
};
