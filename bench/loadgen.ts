// The load generator: a child process of the bench (forked by generator-process.ts), so
// it has an event loop and a core of its own. It takes jobs over IPC, one at a
// time, and answers with figures measured on its own clock.
//
// Saga completion is observed on the bus: the generator subscribes (core NATS)
// to order.evt.>, the OrderConcluded events the order service's relay publishes
// after the terminal state has committed — so a saga is counted complete no
// earlier than it really is. A Postgres poll of orders.orders backs this up for
// orders whose event the generator did not see.
import { performance } from "node:perf_hooks";
import { fromBinary } from "@bufbuild/protobuf";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import pg from "pg";
import { receivedEntries } from "../services/platform/bus/bundle.js";
import { surviveDroppedConnections } from "../services/platform/db.js";
import { OrderConcludedSchema } from "../gen/orderflow/order/v1/events_pb.js";
import { CreateOrderResponseSchema, OrderStatus } from "../gen/orderflow/order/v1/order_pb.js";
import { unary } from "./closed-loop.js";
import { cpuPercent, errorName, OrderRequests, sampleError, tally } from "./generator-calls.js";
import { jetStreamCeiling, pgCeiling } from "./generator-ceilings.js";
import { GrpcWireClient } from "./grpc-wire.js";
import { sleep } from "./log.js";
import { busGraceSeconds, type InitJob, type InitResult, type Job, type JobRequest, type JobResponse, type JobResult, type ErrorSample, type SagaStepJob, type SagaStepResult } from "./protocol.js";
import { round, Samples } from "./stats.js";
import { completedAfterWarmUp, completedWhileArriving } from "./throughput.js";

// ---------------------------------------------------------------- state

interface Pending {
  acceptedAt: number;
  step: number;
}

interface StepCounters {
  confirmed: number;
  rejected: number;
  detectedByPoll: number;
  e2e: Samples;
  /** When the step began (performance.now()), and its end-to-end samples by second of acceptance. */
  startedAt: number;
  bySecond: Samples[];
}

/** The run's CreateOrder requests, once initialised. */
let requests: OrderRequests | undefined;
let orderGrpc: GrpcWireClient | undefined;
let nats: NatsConnection | undefined;
let concludedSub: Subscription | undefined;
let db: pg.Pool | undefined;
/** Accepted orders whose conclusion has not been seen, by order id. */
const pending = new Map<string, Pending>();
/** Conclusions seen before their CreateOrder answer arrived (or of orders not ours). */
const early = new Map<string, { at: number; confirmed: boolean }>();
const stepCounters = new Map<number, StepCounters>();
/** Every CONFIRMED observation, for completed/s over a window. */
let confirmedTimes = new Samples(1 << 16);
let pollTimer: NodeJS.Timeout | undefined;

function countersOf(step: number): StepCounters {
  let counters = stepCounters.get(step);
  if (!counters) {
    counters = { confirmed: 0, rejected: 0, detectedByPoll: 0, e2e: new Samples(), startedAt: performance.now(), bySecond: [] };
    stepCounters.set(step, counters);
  }
  return counters;
}

function conclude(orderId: string, at: number, confirmed: boolean, viaPoll: boolean): void {
  const entry = pending.get(orderId);
  if (!entry) {
    if (!viaPoll) early.set(orderId, { at, confirmed });
    return;
  }
  pending.delete(orderId);
  const counters = countersOf(entry.step);
  if (confirmed) {
    counters.confirmed += 1;
    confirmedTimes.add(at);
  } else counters.rejected += 1;
  if (viaPoll) counters.detectedByPoll += 1;
  const latency = Math.max(0, at - entry.acceptedAt);
  counters.e2e.add(latency);
  const second = Math.max(0, Math.floor((entry.acceptedAt - counters.startedAt) / 1_000));
  (counters.bySecond[second] ??= new Samples(256)).add(latency);
}

async function start(job: InitJob): Promise<InitResult> {
  requests = new OrderRequests(job.customers, job.skus, job.runId);
  orderGrpc = new GrpcWireClient(job.orderAddress);
  db = surviveDroppedConnections(new pg.Pool({ connectionString: job.databaseUrl, max: 2, application_name: "orderflow-bench" }));
  nats = await connect({ servers: job.natsUrl, name: "orderflow-bench" });
  concludedSub = nats.subscribe("order.evt.>", {
    callback: (error, msg) => {
      if (error) return;
      const at = performance.now();
      // One event, or a bundle of them (services/platform/bus/bundle.ts); other types are ignored.
      for (const entry of safely(() => receivedEntries(msg.headers, msg.data)) ?? []) {
        if (entry.type !== OrderConcludedSchema.typeName) continue;
        const event = safely(() => fromBinary(OrderConcludedSchema, entry.payload));
        if (event) conclude(event.orderId, at, event.status === OrderStatus.CONFIRMED, false);
      }
    },
  });
  pollTimer = setInterval(() => void pollConcluded(), 1_000);
  return { kind: "init", natsVersion: nats.info?.version ?? "unknown" };
}

/** `read()`'s value, or undefined if it throws (a message the generator does not understand). */
function safely<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/** Backstop: asks Postgres about orders accepted more than 3 s ago whose event has not been seen within busGraceSeconds of their commit. */
let polling = false;
async function pollConcluded(): Promise<void> {
  if (polling || !db) return;
  polling = true;
  try {
    const cutoff = performance.now() - 3_000;
    const ids: string[] = [];
    for (const [id, entry] of pending) {
      if (entry.acceptedAt < cutoff) ids.push(id);
      if (ids.length >= 5_000) break;
    }
    if (ids.length === 0) return;
    const result = await db.query<{ order_id: string; status: string }>(
      "SELECT order_id::text AS order_id, status FROM orders.orders WHERE order_id = ANY($1::uuid[]) AND concluded_at < now() - make_interval(secs => $2)",
      [ids, busGraceSeconds],
    );
    const at = performance.now();
    for (const row of result.rows) conclude(row.order_id, at, row.status === "CONFIRMED", true);
  } catch {
    // The next poll tries again.
  } finally {
    polling = false;
    // Forget early conclusions nobody claimed (other clients' orders).
    const old = performance.now() - 60_000;
    for (const [id, seen] of early) if (seen.at < old) early.delete(id);
  }
}

function initialised(): OrderRequests {
  if (!requests) throw new Error("not initialised");
  return requests;
}

// ---------------------------------------------------------------- saga step (open loop)

async function sagaStep(job: SagaStepJob): Promise<SagaStepResult> {
  const client = orderGrpc;
  if (!client) throw new Error("not initialised");
  const createLatency = new Samples();
  const createErrors: Record<string, number> = {};
  const createErrorSamples: ErrorSample[] = [];
  const resentBefore = client.resent;
  const counters = countersOf(job.index);
  const interval = 1_000 / job.ratePerSec;
  const startCpu = process.cpuUsage();
  const t0 = performance.now();
  counters.startedAt = t0;
  const end = t0 + job.durationMs;
  let next = t0;
  let scheduled = 0;
  let dropped = 0;
  let accepted = 0;
  let inFlight = 0;
  let lagMax = 0;
  const stepOrders = new Set<string>();
  let allSent!: () => void;
  const sent = new Promise<void>((resolve) => (allSent = resolve));

  const fire = (intended: number): void => {
    scheduled += 1;
    if (inFlight >= job.maxInFlight) {
      dropped += 1;
      return;
    }
    inFlight += 1;
    const lag = performance.now() - intended;
    if (lag > lagMax) lagMax = lag;
    client.call("/orderflow.order.v1.OrderService/CreateOrder", initialised().next()).then(
      (bytes) => {
        const at = performance.now();
        inFlight -= 1;
        // Open loop: latency from the scheduled arrival, so generator delays are not hidden.
        createLatency.add(at - intended);
        const orderId = fromBinary(CreateOrderResponseSchema, bytes).order?.orderId ?? "";
        accepted += 1;
        stepOrders.add(orderId);
        pending.set(orderId, { acceptedAt: at, step: job.index });
        const seen = early.get(orderId);
        if (seen) {
          early.delete(orderId);
          conclude(orderId, seen.at, seen.confirmed, false);
        }
      },
      (error: unknown) => {
        inFlight -= 1;
        const code = errorName(error);
        tally(createErrors, code);
        sampleError(createErrorSamples, code, error, performance.now() - t0);
      },
    );
  };

  const tick = (): void => {
    const now = performance.now();
    while (next <= now && next < end) {
      fire(next);
      next += interval;
    }
    // Sleep until the next arrival: a finer tick would wake the generator ~1,000 times a second and take CPU from the system under test.
    if (next < end) setTimeout(tick, Math.max(0, next - performance.now()));
    else allSent();
  };
  tick();
  await sent;
  await sleep(Math.max(0, end - performance.now()));
  const windowEnd = performance.now();
  const backlogAtEnd = [...stepOrders].filter((id) => pending.has(id)).length;
  const inFlightAtEnd = inFlight;
  const completedInWindowPerSec = completedAfterWarmUp(confirmedTimes, { start: t0, warmupMs: job.warmupMs, arrivalsEnd: windowEnd });

  // Drain: wait for outstanding calls and this step's orders to conclude.
  const drainStart = performance.now();
  const mine = (): number => {
    let count = 0;
    for (const id of stepOrders) if (pending.has(id)) count += 1;
    return count;
  };
  while ((inFlight > 0 || mine() > 0) && performance.now() - drainStart < job.drainTimeoutMs) await sleep(20);
  const unfinished = mine() + inFlight;
  const drainMs = performance.now() - drainStart;
  // Orders that never concluded stay out of later steps' figures.
  for (const id of stepOrders) pending.delete(id);
  const cpu = cpuPercent(startCpu, t0);
  // Confirmations while the arrivals ran, from the median latency on (throughput.ts).
  const whileArriving = completedWhileArriving(confirmedTimes, { start: t0, warmupMs: job.warmupMs, arrivalsEnd: windowEnd, medianLatencyMs: counters.e2e.summary().p50 });
  // In a short step, conclusions that bunch up (batches, a slow start) can crowd
  // the window; over the step nothing completes faster than it was accepted.
  const completedPerSec = Math.min(whileArriving, accepted / (job.durationMs / 1_000));
  // Keep only recent confirmations.
  confirmedTimes = new Samples(1 << 16);
  return {
    kind: "saga-step",
    index: job.index,
    offeredPerSec: job.ratePerSec,
    durationMs: job.durationMs,
    scheduled,
    dropped,
    accepted,
    acceptedPerSec: round(accepted / (job.durationMs / 1_000), 1),
    createErrors,
    createErrorSamples,
    createResent: client.resent - resentBefore,
    completedPerSec: round(completedPerSec, 1),
    completedInWindowPerSec: round(completedInWindowPerSec, 1),
    completedShiftedPerSec: round(whileArriving, 1),
    confirmed: counters.confirmed,
    rejected: counters.rejected,
    backlogAtEnd,
    inFlightAtEnd,
    unfinished,
    drained: unfinished === 0,
    drainMs: round(drainMs, 0),
    detectedByPoll: counters.detectedByPoll,
    createLatency: createLatency.summary(),
    e2eLatency: counters.e2e.summary(),
    e2eBySecond: Array.from(counters.bySecond, (samples) => (samples ?? new Samples(1)).summary()),
    generatorLagMaxMs: round(lagMax, 1),
    generatorCpuPercent: cpu,
  };
}

// ---------------------------------------------------------------- IPC

async function run(job: Job): Promise<JobResult> {
  switch (job.kind) {
    case "init":
      return start(job);
    case "saga-step":
      return sagaStep(job);
    case "unary":
      return unary(job, initialised());
    case "ceiling-pg":
      return pgCeiling(job);
    case "ceiling-jetstream":
      return jetStreamCeiling(job);
    case "stop":
      if (pollTimer) clearInterval(pollTimer);
      concludedSub?.unsubscribe();
      await nats?.close().catch(() => undefined);
      orderGrpc?.close();
      await db?.end().catch(() => undefined);
      return { kind: "stop" };
  }
}

let queue: Promise<void> = Promise.resolve();
process.on("message", (request: JobRequest) => {
  queue = queue.then(async () => {
    let response: JobResponse;
    try {
      response = { id: request.id, ok: true, result: await run(request.job) };
    } catch (error) {
      response = { id: request.id, ok: false, error: error instanceof Error ? `${error.message}` : String(error) };
    }
    process.send?.(response);
    if (request.job.kind === "stop") setTimeout(() => process.exit(0), 50).unref();
  });
});
process.on("disconnect", () => process.exit(0));
