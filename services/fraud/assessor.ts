import { Decision } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { errorMessage } from "../platform/errors.js";
import type { Logger } from "../platform/logger.js";
import { fraudMetrics } from "./metrics.js";
import { type Assessment, assess, type FraudRules, type OrderFacts } from "./rules.js";
import type { FraudStore } from "./store.js";

export interface OrderToAssess extends OrderFacts {
  orderId: string;
}

type Mode = "saga" | "dry_run";

/**
 * Applies the rules with the state kept in Redis.
 *
 * Redis is an accelerator, not a dependency: when it is unreachable the service stays
 * up and answers. The velocity rule is skipped (fail open: amount and blocked-customer
 * rules still apply) and counted in fraud_redis_failures_total with a warning, and the
 * saga's decision is not cached, so a command re-sent during the outage is assessed
 * again. The reply keeps a deterministic msgID (`fraud-assessed:<orderId>`), so the
 * orchestrator still acts on the first reply only.
 */
export class FraudAssessor {
  private readonly lastWarned = new Map<string, number>();

  constructor(
    private readonly store: FraudStore,
    private readonly rules: FraudRules,
    private readonly logger: Logger,
  ) {}

  /** AssessOrder: evaluates without recording (reads velocity as if the order were added). */
  async dryRun(order: OrderToAssess): Promise<Assessment> {
    const velocity = await this.tryRedis("velocity", () => this.store.countOrders(order.customerId, order.orderId, this.rules.velocityWindowSeconds));
    const assessment = assess(order, velocity, this.rules);
    count(assessment, "dry_run");
    return assessment;
  }

  /**
   * The saga's check (fraud.cmd.assess): counts the order toward its customer's velocity
   * once, and returns the same decision for every re-send of the command for a day.
   */
  async assessForSaga(order: OrderToAssess): Promise<Assessment> {
    if (order.orderId === "") throw new Error("AssessFraud without order_id");
    let cacheUsable = true;
    const looked = await this.tryRedis(
      "velocity",
      () => this.store.decidedOrRecorded(order.customerId, order.orderId, this.rules.velocityWindowSeconds),
      () => (cacheUsable = false),
    );
    if (looked && "decided" in looked) {
      fraudMetrics.replayedDecisions.inc();
      return looked.decided;
    }
    const fresh = assess(order, looked?.ordersInWindow, this.rules);
    // A concurrent delivery of the same command may have stored its decision first: that one holds.
    const held = cacheUsable ? ((await this.tryRedis("decision_write", () => this.store.saveDecision(order.orderId, fresh))) ?? fresh) : fresh;
    if (held === fresh) count(fresh, "saga");
    else fraudMetrics.replayedDecisions.inc();
    return held;
  }

  private async tryRedis<T>(operation: string, run: () => Promise<T>, onFailure?: () => void): Promise<T | undefined> {
    try {
      return await run();
    } catch (error) {
      fraudMetrics.redisFailures.inc({ operation });
      // Every assessment fails the same way while Redis is down: log each operation at most every 10 s.
      const now = Date.now();
      if (now - (this.lastWarned.get(operation) ?? 0) >= 10_000) {
        this.lastWarned.set(operation, now);
        this.logger.warn("redis operation failed; continuing without it (fail open)", { operation, error: errorMessage(error) });
      }
      onFailure?.();
      return undefined;
    }
  }
}

function count(assessment: Assessment, mode: Mode): void {
  fraudMetrics.assessments.inc({ decision: assessment.decision === Decision.APPROVE ? "approve" : "decline", mode });
  for (const reason of assessment.reasons) fraudMetrics.declineReasons.inc({ reason: reason.code, mode });
}
