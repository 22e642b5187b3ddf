import type { JetStreamManager } from "@nats-io/jetstream";
import { consumerBacklog, enqueueOutbox } from "../../platform/bus/index.js";
import { sagaRoutes } from "../../platform/saga-routes.js";
import { type Database, type PoolClient, prepared } from "../../platform/db.js";
import { errorMessage } from "../../platform/errors.js";
import type { Worker } from "../../platform/host.js";
import type { Logger } from "../../platform/logger.js";
import { commandFor, type Step, stepDomain } from "./commands.js";
import { failForward } from "./orchestrator.js";
import { sagaMetrics } from "./metrics.js";
import { advance, type Change, lockOverdue, ordersSchema, overdueSteps, type SagaOrder, type SagaTiming } from "./state.js";

export interface DeadlineOptions extends SagaTiming {
  /** Sends of a forward step before the order is failed and compensated. */
  maxAttempts: number;
  intervalMs?: number;
  batchSize?: number;
  /**
   * Whether a step's messages are still queued (its command not yet handled, or its reply
   * not yet applied). While they are, an overdue step is given another step timeout instead
   * of a re-send and an attempt: under overload, re-sends only add to the queue. For at most
   * `deferLimitMs` after the step started (default 12 step timeouts), so that a command lost
   * for good (dead-lettered, say) is re-sent and failed in the end however busy the bus is.
   */
  queued?: (steps: ReadonlySet<Step>) => Promise<ReadonlySet<Step>>;
  deferLimitMs?: number;
}

/**
 * What to do when a forward step ran out of attempts: fail the order and undo
 * what may have happened (the participants' tombstones refuse a late command).
 * Compensations are never given up: they are re-sent until done.
 */
export function giveUp(order: SagaOrder): Change | undefined {
  const timedOut = timeoutReasons.find(([step]) => order.awaiting.includes(step));
  return timedOut && failForward(order, timedOut[1]);
}

/** Why an order failed when its steps ran out of attempts, by the first forward step it awaited. */
const timeoutReasons: ReadonlyArray<[Step, string]> = [
  ["fraud", "fraud check timed out"],
  ["reserve", "stock reservation timed out"],
  ["charge", "payment timed out"],
];

/**
 * `DeadlineOptions.queued` from JetStream: a step's messages are queued while its
 * participant's command consumer or this service's reply consumer of that domain has
 * messages to finish.
 */
export function queuedOnBus(jsm: JetStreamManager): (steps: ReadonlySet<Step>) => Promise<ReadonlySet<Step>> {
  return async (steps) => {
    const domains = [...new Set([...steps].map(stepDomain))];
    const backlogs = await Promise.all(
      domains.map((domain) =>
        consumerBacklog(jsm, [
          sagaRoutes.commands(domain),
          sagaRoutes.replies(domain),
        ]),
      ),
    );
    const busy = new Set(domains.filter((_, i) => (backlogs[i] ?? 0) > 0));
    return new Set([...steps].filter((step) => busy.has(stepDomain(step))));
  };
}

/**
 * `DeadlineOptions.queued` from this service's outbox: a step's command is queued while a command
 * to its participant is not published yet (NATS away, or its full stream refusing it).
 */
export function queuedInOutbox(db: Pick<Database, "background">): (steps: ReadonlySet<Step>) => Promise<ReadonlySet<Step>> {
  return async (steps) => {
    const { rows } = await db.background.query<{ domain: string }>(
      prepared("SELECT DISTINCT split_part(subject, '.', 1) AS domain FROM outbox WHERE published_at IS NULL AND subject LIKE '%.cmd.%'", []),
    );
    const waiting = new Set(rows.map((row) => row.domain));
    return new Set([...steps].filter((step) => waiting.has(stepDomain(step))));
  };
}

/** The steps any of `sources` tells are queued. */
export function queuedInAny(...sources: ReadonlyArray<(steps: ReadonlySet<Step>) => Promise<ReadonlySet<Step>>>): (steps: ReadonlySet<Step>) => Promise<ReadonlySet<Step>> {
  return async (steps) => new Set((await Promise.all(sources.map((source) => source(steps)))).flatMap((queued) => [...queued]));
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

  /**
   * One pass over overdue orders; returns how many it handled. JetStream is asked about their
   * steps before the rows are locked, so a slow answer holds no reply back, and a pass that
   * finds nothing overdue opens no transaction.
   */
  async sweep(): Promise<number> {
    const limit = this.options.batchSize ?? 200;
    const steps = await overdueSteps(this.db.background, limit);
    if (steps.size === 0) return 0;
    const queued = await this.queuedSteps(steps);
    return this.db.transaction(async (tx) => {
      const overdue = await lockOverdue(tx, limit);
      const deferred: SagaOrder[] = [];
      const resent: SagaOrder[] = [];
      for (const order of overdue) {
        if (this.deferrable(order, queued)) {
          deferred.push(order);
          continue;
        }
        const failure = order.attempts >= this.options.maxAttempts ? giveUp(order) : undefined;
        if (failure) await this.fail(tx, order, failure);
        else resent.push(order);
      }
      await this.defer(tx, deferred);
      await this.resend(tx, resent);
      return overdue.length;
    }, this.db.background);
  }

  /**
   * Which of the overdue orders' steps have messages still queued (none when that cannot be
   * told). A step an order came to await after this was asked counts as not queued.
   */
  private async queuedSteps(steps: ReadonlySet<Step>): Promise<ReadonlySet<Step>> {
    if (!this.options.queued) return new Set();
    try {
      return await this.options.queued(steps);
    } catch (error) {
      this.logger.warn("cannot tell whether saga steps are still queued; overdue steps are re-sent", { error: errorMessage(error) });
      return new Set();
    }
  }

  private deferrable(order: SagaOrder, queued: ReadonlySet<Step>): boolean {
    const deferLimitMs = this.options.deferLimitMs ?? this.options.stepTimeoutMs * 12;
    return order.awaiting.some((step) => queued.has(step)) && Date.now() - order.stepStartedAt.getTime() < deferLimitMs;
  }

  /** Another step timeout for steps still queued: no re-send, no attempt (one statement for all). */
  private async defer(tx: PoolClient, orders: readonly SagaOrder[]): Promise<void> {
    if (orders.length === 0) return;
    for (const order of orders) for (const step of order.awaiting) sagaMetrics.deferrals.inc({ step });
    await tx.query(
      prepared("UPDATE orders SET step_deadline = now() + make_interval(secs => $2) WHERE order_id = ANY($1::uuid[])", [orders.map((o) => o.orderId), this.options.stepTimeoutMs / 1000]),
    );
  }

  private async fail(tx: PoolClient, order: SagaOrder, failure: Change): Promise<void> {
    for (const step of order.awaiting) sagaMetrics.timeouts.inc({ step });
    this.logger.warn("saga step timed out", { order_id: order.orderId, awaiting: order.awaiting, attempts: order.attempts });
    await advance(tx, order, failure, this.options);
  }

  /** The steps' commands again, each order's next deadline backed off by its attempts (one outbox write, one update). */
  private async resend(tx: PoolClient, orders: readonly SagaOrder[]): Promise<void> {
    if (orders.length === 0) return;
    const commands = orders.flatMap((order) => order.awaiting.map((step) => ({ ...commandFor(step, order), key: order.orderId })));
    await enqueueOutbox(tx, ordersSchema, commands);
    for (const order of orders) for (const step of order.awaiting) sagaMetrics.resends.inc({ step });
    const waitSeconds = orders.map((order) => (this.options.stepTimeoutMs * Math.min(2 ** order.attempts, 32)) / 1000);
    await tx.query(
      prepared(
        `UPDATE orders o SET step_attempts = o.step_attempts + 1, step_deadline = now() + make_interval(secs => r.wait_s)
           FROM unnest($1::uuid[], $2::float8[]) AS r(order_id, wait_s) WHERE o.order_id = r.order_id`,
        [orders.map((o) => o.orderId), waitSeconds],
      ),
    );
  }
}
