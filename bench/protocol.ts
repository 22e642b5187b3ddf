// Messages between the bench (parent) and its load generator (a child process,
// bench/loadgen.ts), and the shapes of the figures the generator returns.
import type { LatencySummary } from "./stats.js";

/**
 * How long after its commit a saga's conclusion may still be on its way over the bus before the
 * generator's Postgres backstop claims it. Under saturation the relay publishes seconds behind
 * the commits; a backstop that claimed every committed conclusion took them before their events
 * arrived and under-stated their latency.
 */
export const busGraceSeconds = 2;

export type Protocol = "grpc" | "connect";

export interface InitJob {
  kind: "init";
  /** host:port of the order service (gRPC). */
  orderAddress: string;
  /** Base URL of the order service (Connect). */
  orderUrl: string;
  natsUrl: string;
  databaseUrl: string;
  customers: string[];
  skus: string[];
  /** Prefix of the idempotency keys, unique per run. */
  runId: string;
}

export interface SagaStepJob {
  kind: "saga-step";
  index: number;
  ratePerSec: number;
  durationMs: number;
  /** How long to wait after the step for its accepted orders to conclude. */
  drainTimeoutMs: number;
  /** CreateOrder calls allowed in flight; arrivals beyond are counted as dropped. */
  maxInFlight: number;
  /** Leading part of the step left out of the completed/s figure (pipeline filling). */
  warmupMs: number;
}

/** Which call a closed-loop unary run makes. */
export type UnaryWorkload =
  | { call: "health"; service: string }
  | { call: "getOrder"; ids: string[]; /** true: each id once (cold cache); false: cycle (warm). */ once: boolean }
  | { call: "listOrders"; pageSize: number }
  | { call: "createOrder" };

export interface UnaryJob {
  kind: "unary";
  name: string;
  protocol: Protocol;
  /** host:port for gRPC (bench/grpc-wire.ts), base URL for Connect (HTTP/1.1, JSON). */
  address: string;
  url: string;
  concurrency: number;
  durationMs: number;
  /** Unmeasured time of the same loops first (see freshServerWarmupMs); 0 for a run of ids used once. */
  warmupMs: number;
  workload: UnaryWorkload;
}

export interface PgCeilingJob {
  kind: "ceiling-pg";
  databaseUrl: string;
  connections: number;
  durationMs: number;
}

export interface JetStreamCeilingJob {
  kind: "ceiling-jetstream";
  natsUrl: string;
  messages: number;
  /** Publishes awaiting their ack at once. */
  window: number;
  payloadBytes: number;
}

export interface StopJob {
  kind: "stop";
}

export type Job = InitJob | SagaStepJob | UnaryJob | PgCeilingJob | JetStreamCeilingJob | StopJob;

export interface JobRequest {
  id: number;
  job: Job;
}

export type JobResponse = { id: number; ok: true; result: JobResult } | { id: number; ok: false; error: string };

export interface InitResult {
  kind: "init";
  natsVersion: string;
}

/** A failed call as the generator saw it: its code, the server's message, when in the step. */
export interface ErrorSample {
  code: string;
  message: string;
  atMs: number;
}

export interface SagaStepResult {
  kind: "saga-step";
  index: number;
  offeredPerSec: number;
  durationMs: number;
  /** Arrivals the generator scheduled in the step. */
  scheduled: number;
  /** Arrivals not sent because maxInFlight CreateOrder calls were outstanding. */
  dropped: number;
  accepted: number;
  acceptedPerSec: number;
  /** CreateOrder calls that failed, by status code name. */
  createErrors: Record<string, number>;
  /** The first few failures of each code, with the server's message and when (ms from the step's start); absent in runs before they were kept. */
  createErrorSamples?: ErrorSample[];
  /** CreateOrders sent again because the server refused their stream (a connection's GOAWAY at its maximum age); absent in runs before they were. */
  createResent?: number;
  /**
   * Confirmations per second while the arrivals ran, from the step's median end-to-end
   * latency on (bench/throughput.ts): the offered rate when the system keeps up (whatever
   * its latency), its capacity under that load when it falls behind. Capped at accepted/s.
   */
  completedPerSec: number;
  /** CONFIRMED conclusions seen during the arrivals (after the warm-up), per second. */
  completedInWindowPerSec: number;
  /** completed/s before capping at accepted/s. */
  completedShiftedPerSec: number;
  /** This step's orders that reached CONFIRMED (by the end of the drain). */
  confirmed: number;
  /** This step's orders that ended REJECTED or CANCELLED. */
  rejected: number;
  /** Accepted, not yet concluded, at the end of the step's arrivals. */
  backlogAtEnd: number;
  /** CreateOrder calls still outstanding at the end of the step's arrivals. */
  inFlightAtEnd: number;
  /** This step's orders still not concluded when the drain gave up. */
  unfinished: number;
  drained: boolean;
  drainMs: number;
  /** Conclusions seen by the Postgres backstop poll, not on the bus (their latency is an over-estimate). */
  detectedByPoll: number;
  createLatency: LatencySummary;
  e2eLatency: LatencySummary;
  /**
   * End to end by the second of the step in which each order was accepted (warm-up
   * included): whether the tail is spread over the step or comes from a few moments.
   */
  e2eBySecond: LatencySummary[];
  /** Largest delay between an arrival's scheduled time and the moment the generator sent it. */
  generatorLagMaxMs: number;
  /** CPU the generator used, in % of one core. */
  generatorCpuPercent: number;
}

export interface UnaryResult {
  kind: "unary";
  name: string;
  protocol: Protocol;
  concurrency: number;
  durationMs: number;
  requests: number;
  errors: Record<string, number>;
  perSec: number;
  latency: LatencySummary;
  /** true when a run that uses each id once ran out of ids before the time was up. */
  exhausted: boolean;
  generatorCpuPercent: number;
}

export interface PgCeilingResult {
  kind: "ceiling-pg";
  connections: number;
  durationMs: number;
  transactions: number;
  txPerSec: number;
  latency: LatencySummary;
  postgresVersion: string;
}

export interface JetStreamCeilingResult {
  kind: "ceiling-jetstream";
  messages: number;
  payloadBytes: number;
  window: number;
  /** First publish to last ack of the consumer. */
  roundTripMsgsPerSec: number;
  /** First publish to last publish ack. */
  publishMsgsPerSec: number;
  elapsedMs: number;
}

export interface StopResult {
  kind: "stop";
}

export type JobResult = InitResult | SagaStepResult | UnaryResult | PgCeilingResult | JetStreamCeilingResult | StopResult;
