import { counter, histogram } from "../../platform/metrics.js";
import { statusName, terminalStatuses } from "../domain/status.js";
import { forwardSteps, steps } from "./commands.js";

const everyStep = steps.map((step) => ({ step }));

export const sagaMetrics = {
  outcomes: counter("orderflow_orders_concluded_total", "Orders that reached a terminal status, by status", ["status"], [...terminalStatuses].map((status) => ({ status: statusName(status) }))),
  duration: histogram("orderflow_saga_duration_seconds", "From order accepted to its terminal status", ["status"], [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]),
  stepLatency: histogram("orderflow_saga_step_seconds", "From a saga command to the reply that completes its step", ["step"], [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
  resends: counter("orderflow_saga_step_resends_total", "Saga commands re-sent after their deadline passed", ["step"], everyStep),
  deferrals: counter("orderflow_saga_step_deferrals_total", "Overdue saga steps given more time because their messages were still queued", ["step"], everyStep),
  timeouts: counter("orderflow_saga_step_timeouts_total", "Saga steps failed after their last attempt", ["step"], [...forwardSteps].map((step) => ({ step }))),
  redecidedReplies: counter("orderflow_saga_redecided_replies_total", "Replies decided again because their order changed between the read and the write", ["type"]),
  ignoredReplies: counter("orderflow_saga_ignored_replies_total", "Replies that matched no awaited step (duplicates, late replies)", ["type"]),
};
