// The load generator: a child process of the bench (forked by bench/main.ts), so
// it has an event loop and a core of its own. It takes jobs over IPC, one at a
// time, and answers with figures measured on its own clock.
//
// Saga completion is observed on the bus: the generator subscribes (core NATS)
// to order.evt.>, the OrderConcluded events the order service's relay publishes
// after the terminal state has committed — so a saga is counted complete no
// earlier than it really is. A Postgres poll of orders.orders backs this up for
// orders whose event the generator did not see.
import { performance } from "node:perf_hooks";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { status as grpcStatus } from "@grpc/grpc-js";
import { AckPolicy, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import pg from "pg";
import { receivedEntries } from "../services/platform/bus/bundle.js";
import { surviveDroppedConnections } from "../services/platform/db.js";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema } from "../gen/grpc/health/v1/health_pb.js";
import { OrderConcludedSchema } from "../gen/orderflow/order/v1/events_pb.js";
import {
  CreateOrderRequestSchema,
  CreateOrderResponseSchema,
  GetOrderRequestSchema,
  GetOrderResponseSchema,
  ListOrdersRequestSchema,
  ListOrdersResponseSchema,
  OrderService,
  OrderStatus,
} from "../gen/orderflow/order/v1/order_pb.js";
import {
  busGraceSeconds,
  type InitJob,
  type InitResult,
  type Job,
  type JobRequest,
  type JobResponse,
  type JobResult,
  type JetStreamCeilingJob,
  type JetStreamCeilingResult,
  type PgCeilingJob,
  type PgCeilingResult,
  type SagaStepJob,
  type SagaStepResult,
  type UnaryJob,
  type UnaryResult,
} from "./protocol.js";
import { GrpcWireClient } from "./grpc-wire.js";
import { round, Samples } from "./stats.js";
import { completedAfterWarmUp, completedWhileArriving } from "./throughput.js";

// ---------------------------------------------------------------- clients

/** A message's binary encoding (gRPC calls take and give bytes: see grpc-wire.ts). */
function encode<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Uint8Array {
  return toBinary(schema, create(schema, init));
}

/** A stable name for a failure: the gRPC / Connect code, or the error's message. */
function errorName(error: unknown): string {
  if (error instanceof ConnectError) return Code[error.code] ?? String(error.code);
  if (typeof error === "object" && error !== null && typeof (error as { code?: unknown }).code === "number") {
    const code = (error as { code: number }).code;
    return grpcStatus[code] ?? String(code);
  }
  return error instanceof Error ? error.message.slice(0, 80) : String(error).slice(0, 80);
}

function tally(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function cpuPercent(startCpu: NodeJS.CpuUsage, startedAt: number): number {
  const used = process.cpuUsage(startCpu);
  const elapsedMs = performance.now() - startedAt;
  return elapsedMs > 100 ? round(((used.user + used.system) / 1000 / elapsedMs) * 100, 1) : 0;
}

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

let init: InitJob | undefined;
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
let orderSeq = 0;
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
  init = job;
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

function createOrderBody(): Uint8Array {
  if (!init) throw new Error("not initialised");
  const seq = ++orderSeq;
  const customerId = init.customers[seq % init.customers.length] ?? "bench-0";
  const sku = init.skus[Math.floor(Math.random() * init.skus.length)] ?? "BENCH-1";
  return encode(CreateOrderRequestSchema, { customerId, items: [{ sku, quantity: 1n }], idempotencyKey: `${init.runId}-${seq}` });
}

// ---------------------------------------------------------------- saga step (open loop)

async function sagaStep(job: SagaStepJob): Promise<SagaStepResult> {
  const client = orderGrpc;
  if (!client) throw new Error("not initialised");
  const createLatency = new Samples();
  const createErrors: Record<string, number> = {};
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
    client.call("/orderflow.order.v1.OrderService/CreateOrder", createOrderBody()).then(
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
        tally(createErrors, errorName(error));
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

// ---------------------------------------------------------------- closed-loop unary

type Caller = () => Promise<void>;

function unaryCaller(job: UnaryJob, nextId: () => string | undefined): { call: Caller; close(): void } {
  const workload = job.workload;
  const customers = init?.customers ?? ["bench-0"];
  let listIndex = 0;
  if (job.protocol === "grpc") {
    const client = new GrpcWireClient(job.address);
    const call = async (): Promise<void> => {
      switch (workload.call) {
        case "health": {
          const bytes = await client.call("/grpc.health.v1.Health/Check", encode(HealthCheckRequestSchema, { service: workload.service }));
          fromBinary(HealthCheckResponseSchema, bytes);
          return;
        }
        case "getOrder": {
          const orderId = nextId();
          if (orderId === undefined) throw new Exhausted();
          fromBinary(GetOrderResponseSchema, await client.call("/orderflow.order.v1.OrderService/GetOrder", encode(GetOrderRequestSchema, { orderId })));
          return;
        }
        case "listOrders": {
          const customerId = customers[listIndex++ % customers.length] ?? "bench-0";
          const body = encode(ListOrdersRequestSchema, { customerId, pageSize: workload.pageSize });
          fromBinary(ListOrdersResponseSchema, await client.call("/orderflow.order.v1.OrderService/ListOrders", body));
          return;
        }
        case "createOrder":
          fromBinary(CreateOrderResponseSchema, await client.call("/orderflow.order.v1.OrderService/CreateOrder", createOrderBody()));
          return;
      }
    };
    return { call, close: () => client.close() };
  }
  // Connect protocol over HTTP/1.1 with JSON, as a browser or curl would call it.
  const transport = createConnectTransport({ baseUrl: job.url, httpVersion: "1.1" });
  const health: Client<typeof Health> = createClient(Health, transport);
  const orders: Client<typeof OrderService> = createClient(OrderService, transport);
  const call = async (): Promise<void> => {
    switch (workload.call) {
      case "health":
        await health.check({ service: workload.service });
        return;
      case "getOrder": {
        const orderId = nextId();
        if (orderId === undefined) throw new Exhausted();
        await orders.getOrder({ orderId });
        return;
      }
      case "listOrders":
        await orders.listOrders({ customerId: customers[listIndex++ % customers.length] ?? "bench-0", pageSize: workload.pageSize });
        return;
      case "createOrder": {
        const request = fromBinary(CreateOrderRequestSchema, createOrderBody());
        await orders.createOrder(request);
        return;
      }
    }
  };
  return { call, close: () => undefined };
}

class Exhausted extends Error {}

async function unary(job: UnaryJob): Promise<UnaryResult> {
  const workload = job.workload;
  let idIndex = 0;
  const nextId = (): string | undefined => {
    if (workload.call !== "getOrder" || workload.ids.length === 0) return undefined;
    if (workload.once) return workload.ids[idIndex++];
    return workload.ids[idIndex++ % workload.ids.length];
  };
  const { call, close } = unaryCaller(job, nextId);
  const latency = new Samples(1 << 16);
  const errors: Record<string, number> = {};
  // Each loop adds to the shared counters only after its own await has returned:
  // no read-before-await, so no increment is lost.
  const counts = { ok: 0 };
  let exhausted = false;
  // One warm-up call per loop, not measured (connections, JIT).
  // A warm GetOrder run first reads each of its ids once, which puts them in the cache.
  if (workload.call === "getOrder") {
    if (!workload.once) for (let i = 0; i < workload.ids.length; i++) await call().catch(() => undefined);
    idIndex = 0;
  } else {
    await Promise.allSettled(Array.from({ length: Math.min(job.concurrency, 4) }, () => call()));
  }
  const startCpu = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + job.durationMs;
  const loop = async (): Promise<void> => {
    while (!exhausted && performance.now() < end) {
      const started = performance.now();
      try {
        await call();
        latency.add(performance.now() - started);
        counts.ok += 1;
      } catch (error) {
        if (error instanceof Exhausted) {
          exhausted = true;
          return;
        }
        tally(errors, errorName(error));
        // Do not spin on a dead endpoint.
        await sleep(1);
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, loop));
  const elapsed = performance.now() - t0;
  const cpu = cpuPercent(startCpu, t0);
  close();
  return {
    kind: "unary",
    name: job.name,
    protocol: job.protocol,
    concurrency: job.concurrency,
    durationMs: round(elapsed, 0),
    requests: counts.ok,
    errors,
    perSec: round(counts.ok / (elapsed / 1_000), 1),
    latency: latency.summary(),
    exhausted,
    generatorCpuPercent: cpu,
  };
}

// ---------------------------------------------------------------- ceilings

async function pgCeiling(job: PgCeilingJob): Promise<PgCeilingResult> {
  const pool = surviveDroppedConnections(new pg.Pool({ connectionString: job.databaseUrl, max: job.connections, application_name: "orderflow-bench-ceiling" }));
  try {
    await pool.query("CREATE TABLE IF NOT EXISTS public.bench_ceiling (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text NOT NULL, at timestamptz NOT NULL DEFAULT now())");
    const version = (await pool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? "unknown";
    const clients = await Promise.all(Array.from({ length: job.connections }, () => pool.connect()));
    const latency = new Samples(1 << 16);
    const perConnection = new Array<number>(job.connections).fill(0);
    const t0 = performance.now();
    const end = t0 + job.durationMs;
    await Promise.all(
      clients.map(async (client, index) => {
        while (performance.now() < end) {
          const started = performance.now();
          await client.query("BEGIN");
          await client.query("INSERT INTO public.bench_ceiling (payload) VALUES ($1)", [`tx-${index}`]);
          await client.query("COMMIT");
          latency.add(performance.now() - started);
          perConnection[index] = (perConnection[index] ?? 0) + 1;
        }
      }),
    );
    const elapsed = performance.now() - t0;
    for (const client of clients) client.release();
    await pool.query("DROP TABLE IF EXISTS public.bench_ceiling");
    const transactions = perConnection.reduce((a, b) => a + b, 0);
    return {
      kind: "ceiling-pg",
      connections: job.connections,
      durationMs: round(elapsed, 0),
      transactions,
      txPerSec: round(transactions / (elapsed / 1_000), 1),
      latency: latency.summary(),
      postgresVersion: version,
    };
  } finally {
    await pool.end().catch(() => undefined);
  }
}

async function jetStreamCeiling(job: JetStreamCeilingJob): Promise<JetStreamCeilingResult> {
  const nc = await connect({ servers: job.natsUrl, name: "orderflow-bench-ceiling" });
  const stream = `BENCH_CEILING_${process.pid}`;
  const subject = `bench.ceiling.${process.pid}`;
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File });
    await jsm.consumers.add(stream, { durable_name: "ceiling", ack_policy: AckPolicy.Explicit, max_ack_pending: 20_000 });
    const js = jetstream(nc);
    const consumer = await js.consumers.get(stream, "ceiling");
    const payload = new Uint8Array(job.payloadBytes).fill(120);
    const t0 = performance.now();
    const consumed = (async () => {
      const messages = await consumer.consume({ max_messages: 1_000 });
      let seen = 0;
      for await (const message of messages) {
        message.ack();
        seen += 1;
        if (seen >= job.messages) break;
      }
      // The last acks leave with the next flush.
      await nc.flush();
      return performance.now();
    })();
    let published = 0;
    const publisher = async (): Promise<void> => {
      while (published < job.messages) {
        published += 1;
        await js.publish(subject, payload);
      }
    };
    await Promise.all(Array.from({ length: job.window }, publisher));
    const publishedAt = performance.now();
    const consumedAt = await Promise.race([consumed, sleep(60_000).then(() => Number.NaN)]);
    if (Number.isNaN(consumedAt)) throw new Error("the JetStream consumer did not receive every message within 60 s");
    return {
      kind: "ceiling-jetstream",
      messages: job.messages,
      payloadBytes: job.payloadBytes,
      window: job.window,
      roundTripMsgsPerSec: round(job.messages / ((consumedAt - t0) / 1_000), 0),
      publishMsgsPerSec: round(job.messages / ((publishedAt - t0) / 1_000), 0),
      elapsedMs: round(consumedAt - t0, 0),
    };
  } finally {
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(stream);
    } catch {
      // Gone already.
    }
    await nc.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------- IPC

async function run(job: Job): Promise<JobResult> {
  switch (job.kind) {
    case "init":
      return start(job);
    case "saga-step":
      return sagaStep(job);
    case "unary":
      return unary(job);
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
