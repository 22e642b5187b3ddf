import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { enqueueOutbox } from "../../platform/bus/index.js";
import type { Database, PoolClient } from "../../platform/db.js";
import { errorMessage } from "../../platform/errors.js";
import type { Worker } from "../../platform/host.js";
import type { Logger } from "../../platform/logger.js";
import { commandFor } from "./commands.js";
import { sagaMetrics } from "./metrics.js";
import { advance, type Change, lockOverdue, ordersSchema, type SagaOrder, type SagaTiming } from "./state.js";

export interface DeadlineOptions extends SagaTiming {
  /** Sends of a forward step before the order is failed and compensated. */
  maxAttempts: number;
  intervalMs?: number;
  batchSize?: number;
}

/**
 * What to do when a forward step ran out of attempts: fail the order and undo
 * what may have happened (the participants' tombstones refuse a late command).
 * Compensations are never given up: they are re-sent until done.
 */
function giveUp(order: SagaOrder): Change | undefined {
  if (order.awaiting.includes("fraud")) return { status: OrderStatus.REJECTED, reason: "fraud check timed out", done: ["fraud"] };
  if (order.awaiting.includes("reserve")) return { reason: "stock reservation timed out", done: ["reserve"], start: ["release"], compensateTo: OrderStatus.REJECTED };
  if (order.awaiting.includes("charge")) return { reason: "payment timed out", done: ["charge"], start: ["refund", "release"], compensateTo: OrderStatus.REJECTED };
  return undefined;
}

/** Re-sends the commands of steps past their deadline, then fails them after maxAttempts. */
export class DeadlineWatcher implements Worker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(private readonly db: Database, private readonly options: DeadlineOptions, private readonly logger: Logger) {}

  start(): this {
    this.timer = setInterval(() => {
      this.running ??= this.sweep()
        .catch((error: unknown) => this.logger.warn("deadline sweep failed", { error: errorMessage(error) }))
        .finally(() => (this.running = undefined));
    }, this.options.intervalMs ?? 1_000);
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass over overdue orders; returns how many it handled. */
  async sweep(): Promise<number> {
    return this.db.transaction(async (tx) => {
      const overdue = await lockOverdue(tx, this.options.batchSize ?? 200);
      for (const order of overdue) await this.handle(tx, order);
      return overdue.length;
    }, this.db.background);
  }

  private async handle(tx: PoolClient, order: SagaOrder): Promise<void> {
    const failure = order.attempts >= this.options.maxAttempts ? giveUp(order) : undefined;
    if (failure) {
      for (const step of order.awaiting) sagaMetrics.timeouts.inc({ step });
      this.logger.warn("saga step timed out", { order_id: order.orderId, awaiting: order.awaiting, attempts: order.attempts });
      await advance(tx, order, failure, this.options);
      return;
    }
    const commands = order.awaiting.map((step) => commandFor(step, order));
    await enqueueOutbox(tx, ordersSchema, commands.map((c) => ({ ...c, key: order.orderId })));
    for (const step of order.awaiting) sagaMetrics.resends.inc({ step });
    const backoff = Math.min(2 ** order.attempts, 32);
    await tx.query("UPDATE orders SET step_attempts = step_attempts + 1, step_deadline = now() + make_interval(secs => $2) WHERE order_id = $1", [
      order.orderId,
      (this.options.stepTimeoutMs * backoff) / 1000,
    ]);
  }
}
