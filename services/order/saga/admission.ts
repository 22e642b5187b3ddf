import { type Database, prepared } from "../../platform/db.js";
import { errorMessage } from "../../platform/errors.js";
import type { Worker } from "../../platform/host.js";
import type { Logger } from "../../platform/logger.js";
import { counter, gauge } from "../../platform/metrics.js";
import { retryLater } from "../../platform/rpc/retry-later.js";

const inProgressGauge = gauge(
  "orderflow_saga_orders_in_progress",
  "Orders whose saga has not concluded, across all replicas, as this replica last counted them",
  [],
);
const limitGauge = gauge(
  "orderflow_saga_orders_in_progress_limit",
  "SAGA_MAX_ORDERS_IN_PROGRESS: orders in progress at which CreateOrder refuses new ones (0: no bound)",
  [],
);
const shed = counter("orderflow_order_admission_refused_total", "CreateOrder calls refused because the sagas in progress reached SAGA_MAX_ORDERS_IN_PROGRESS", []);

export interface AdmissionOptions {
  /** Orders in progress beyond which new ones are refused; 0 admits every order. */
  maxInProgress: number;
  /** How often the orders in progress are counted in Postgres once they may be half the bound or more. */
  countIntervalMs?: number;
  /** How often they are counted below that (an idle replica need not ask four times a second). */
  quietCountIntervalMs?: number;
}

/**
 * Bounds the sagas in progress. Past the bound the system is behind: an order admitted
 * then only waits longer, and accepting it takes CPU from the orders already accepted,
 * so fewer of them finish each second. A refusal costs the caller nothing, changes
 * nothing, and tells a client to come back.
 *
 * The count covers every replica: Postgres's orders awaiting a step. To the last count
 * this replica adds the orders it is writing and those it wrote since that count began,
 * so it cannot overshoot the bound between counts; concluded orders, and those other
 * replicas place, reach its figure at the next count (so replicas together can overshoot,
 * each by what it admits in one interval). It counts every `countIntervalMs` while its
 * figure is half the bound or more, every `quietCountIntervalMs` below that, and at once
 * when an admission crosses the half.
 */
export class SagaAdmission implements Worker {
  private counted = 0;
  private writing = 0;
  private writtenSinceCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private counting: Promise<void> | undefined;
  private countFailing = false;
  private stopped = false;
  private quiet = true;

  constructor(private readonly db: Database, private readonly options: AdmissionOptions, private readonly logger: Logger) {}

  async start(): Promise<this> {
    limitGauge.set(Math.max(0, this.options.maxInProgress));
    if (this.options.maxInProgress <= 0) return this;
    await this.count();
    this.scheduleCount();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.counting;
  }

  private get nearBound(): boolean {
    return this.inProgress * 2 >= this.options.maxInProgress;
  }

  private scheduleCount(delayMs?: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.quiet = !this.nearBound;
    const delay = delayMs ?? (this.quiet ? (this.options.quietCountIntervalMs ?? 5_000) : (this.options.countIntervalMs ?? 250));
    this.timer = setTimeout(() => {
      this.counting ??= this.count().finally(() => {
        this.counting = undefined;
        this.scheduleCount();
      });
    }, delay);
    this.timer.unref();
  }

  /**
   * Runs `write` (which places one order) if the sagas in progress are below the bound;
   * throws RESOURCE_EXHAUSTED (retry after 1 s), without running it, if they are not.
   */
  async admit<T>(write: () => Promise<T>): Promise<T> {
    const limit = this.options.maxInProgress;
    if (limit <= 0) return write();
    const inProgress = this.inProgress;
    if (inProgress >= limit) {
      shed.inc();
      throw retryLater(`${inProgress} orders are in progress, the most this system takes at once (${limit}); retry in a second`, 1_000);
    }
    this.writing += 1;
    if (this.quiet && this.nearBound && this.counting === undefined) this.scheduleCount(0);
    try {
      return await write();
    } finally {
      this.writing -= 1;
      // Counted as written even when the write failed: the next count corrects it.
      this.writtenSinceCount += 1;
    }
  }

  /** The orders in progress as last counted, plus those this replica is writing or wrote since. */
  get inProgress(): number {
    return this.counted + this.writing + this.writtenSinceCount;
  }

  /** Counts the orders in progress; until a count succeeds again, the last one stands. */
  async count(): Promise<void> {
    // Orders written before the count began are in it; those written while it runs may be, and stay added.
    const writtenBefore = this.writtenSinceCount;
    try {
      const { rows } = await this.db.background.query<{ n: number }>(prepared("SELECT count(*)::int AS n FROM orders WHERE in_flight", []));
      this.counted = rows[0]?.n ?? 0;
      this.writtenSinceCount -= writtenBefore;
      inProgressGauge.set(this.counted);
      if (this.countFailing) this.logger.info("counting the orders in progress again", { inProgress: this.counted });
      this.countFailing = false;
    } catch (error) {
      if (!this.countFailing) this.logger.warn("cannot count the orders in progress; admitting against the last count", { error: errorMessage(error) });
      this.countFailing = true;
    }
  }
}
