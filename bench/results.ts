// The shape of a bench result (bench/results/*.json) and a checker for it.
import type { JetStreamCeilingResult, PgCeilingResult, SagaStepResult, UnaryResult } from "./protocol.js";
import type { CpuBySecond } from "./cpu-by-second.js";
import type { ConsumerQueue } from "./queues.js";
import type { SagaStage } from "./stages.js";
import type { SagaWork } from "./work.js";
import type { GoalCheck } from "./goals.js";
import type { H2loadResult } from "./h2load.js";
import type { DatabaseConnectionsFootprint, ServiceFootprint } from "./resources.js";
import type { BenchOptions, Mode } from "./options.js";

export const resultSchema = "orderflow-bench/1";

export interface MachineFacts {
  cores: number;
  cpuModel: string;
  totalMemoryMb: number;
  platform: string;
  kernel: string;
  node: string;
  gitCommit: string;
  gitDirty: boolean;
  date: string;
  postgres: string;
  nats: string;
  /** 1-, 5- and 15-minute load averages when the run started and when it ended (other work on the machine skews every figure). */
  loadAverageAtStart: number[];
  loadAverageAtEnd: number[];
  /**
   * Linux's autogroup scheduling (`kernel.sched_autogroup_enabled`): each session is one
   * scheduling group, which shares the CPU evenly with the others. The bench's services run in
   * its session, one group; `npm start` gives each its own. Absent in runs before it was recorded,
   * null where the kernel does not say.
   */
  autogroupScheduling?: boolean | null;
  /** Each service's malloc, read from the libraries mapped into its process; absent in runs before it was recorded. */
  servicesAllocator?: Record<string, string>;
  /** Each service's node flags, read from its process's command line (null: unreadable); absent in runs before they were recorded. */
  servicesNodeFlags?: Record<string, string[] | null>;
}

export interface Ratio {
  name: string;
  system: number;
  ceiling: number;
  /** system / ceiling */
  ratio: number;
  unit: string;
  note: string;
}

export interface BenchResult {
  schema: typeof resultSchema;
  mode: Mode;
  startedAt: string;
  finishedAt: string;
  machine: MachineFacts;
  config: Pick<BenchOptions, "stepMs" | "runMs" | "rates" | "concurrency" | "customers" | "products"> & {
    /** The goal's latency step when it ran longer than the others; absent in runs before it did. */
    goalStepMs?: number;
    target: Record<string, string> | null;
    logLevel: string;
    serviceEnv: Record<string, Record<string, string>>;
    /** Whether each service ran in a memory cgroup at its pod's limit (--pod-memory); absent in runs before it was offered. */
    podMemory?: boolean;
    generator: string;
  };
  /** `history`: concluded orders written before the run (--history), in `historyMs`. */
  seed: { customers: number; products: number; ms: number; history?: number; historyMs?: number };
  saga: {
    steps: (SagaStepResult & {
      serviceCpuPercent: Record<string, number>;
      /**
       * Time each process's threads spent runnable but waiting for a core over the step and its
       * drain, in % of the step's time (100 = one thread waiting all along).
       */
      runQueueWaitPercent: Record<string, number>;
      /** Milliseconds of CPU per saga concluded in the step, per process and for the machine (null when none concluded). */
      cpuMsPerSaga: Record<string, number> | null;
      /**
       * Wake-ups per saga concluded in the step (voluntary context switches of each process's
       * threads; `machine`: every context switch); null when none concluded.
       */
      wakeUpsPerSaga: Record<string, number> | null;
      /**
       * % of one core each process used (machine: all cores) in each second from the step's
       * start to the end of its arrivals and drain, to set beside `e2eBySecond`; absent in runs
       * before it was recorded.
       */
      cpuBySecond?: CpuBySecond;
      /**
       * The autovacuum stand-in's visits while the step ran (absent where it did not stand in:
       * a Postgres with autovacuum on, or --target): ms from the step's start, the tables
       * analyzed, ms taken.
       */
      autovacuumVisits?: Array<{ fromStepStartMs: number; tables: string[]; durationMs: number }>;
      /** JetStream consumers by the most messages they had not yet acknowledged during the step (deepest first). */
      queues: ConsumerQueue[];
      /** JetStream messages, Postgres write transactions and WAL bytes over the step and its drain, and per saga concluded. */
      work: SagaWork;
      /**
       * Where the step's confirmed orders spent their time between services, stage by stage
       * (bench/stages.ts); empty when none was confirmed.
       */
      stages: SagaStage[];
      saturated: boolean;
      saturationReason: string;
    })[];
    /** Highest completed sagas/s in any step. */
    maxCompletedPerSec: number;
    /** Highest offered rate the system kept up with (0 when none). */
    sustainedPerSec: number;
    saturated: boolean;
  };
  queries: UnaryResult[];
  transport: UnaryResult[];
  ceilings: {
    grpcJs: UnaryResult;
    postgres: PgCeilingResult;
    jetstream: JetStreamCeilingResult;
  };
  /** The same transports loaded by h2load (empty when it is not installed). */
  transportH2load: H2loadResult[];
  tools: { h2load: string | null };
  ratios: Ratio[];
  /** The goal's figures as this run measured them (bench/goals.ts). */
  goals: GoalCheck[];
  resources: ServiceFootprint[];
  /**
   * The services' Postgres connections at the end of the run, when Postgres runs on this machine
   * (null otherwise; absent in runs before it was recorded): what sizes Postgres's memory.
   */
  postgresConnections?: DatabaseConnectionsFootprint | null;
  notes: string[];
}

/** Problems with a result: missing sections, non-finite numbers. Empty = well-formed. */
export function checkResult(value: unknown): string[] {
  const problems: string[] = [];
  const walk = (node: unknown, path: string): void => {
    if (typeof node === "number" && !Number.isFinite(node)) problems.push(`${path} is ${node}`);
    else if (Array.isArray(node)) node.forEach((item, index) => walk(item, `${path}[${index}]`));
    else if (typeof node === "object" && node !== null) for (const [key, child] of Object.entries(node)) walk(child, `${path}.${key}`);
  };
  walk(value, "$");
  if (typeof value !== "object" || value === null) return ["result is not an object"];
  const result = value as Partial<BenchResult>;
  if (result.schema !== resultSchema) problems.push(`schema is ${String(result.schema)}`);
  for (const section of ["machine", "config", "seed", "saga", "queries", "transport", "ceilings", "transportH2load", "tools", "ratios", "goals", "resources"] as const) {
    if (result[section] === undefined) problems.push(`section ${section} is missing`);
  }
  if (result.saga && result.saga.steps.length === 0) problems.push("saga has no steps");
  for (const [index, step] of (result.saga?.steps ?? []).entries()) {
    if (!Array.isArray(step.queues)) problems.push(`saga step ${index} has no queues`);
    if (!step.work) problems.push(`saga step ${index} has no work counts`);
    if (!Array.isArray(step.stages)) problems.push(`saga step ${index} has no stages`);
    else if (step.confirmed > 0 && !step.stages.some((s) => s.count > 0)) problems.push(`saga step ${index} confirmed orders but timed no stage of them`);
  }
  if (result.queries) {
    for (const name of ["GetOrder warm", "GetOrder cold", "ListOrders", "CreateOrder"]) {
      for (const protocol of ["grpc", "connect"] as const) {
        if (name === "CreateOrder" && protocol === "connect") continue;
        if (!result.queries.some((q) => q.name === name && q.protocol === protocol)) problems.push(`query ${name} over ${protocol} is missing`);
      }
    }
  }
  if (result.ceilings) {
    for (const ceiling of ["grpcJs", "postgres", "jetstream"] as const) if (!result.ceilings[ceiling]) problems.push(`ceiling ${ceiling} is missing`);
  }
  if (result.resources && result.resources.length === 0) problems.push("no service resources");
  if (result.config?.podMemory) {
    for (const r of result.resources ?? []) if (r.name !== "bench-generator" && !r.memoryCgroup) problems.push(`--pod-memory, but ${r.name} has no memory cgroup`);
  }
  return problems;
}
