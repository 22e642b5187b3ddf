// Command-line flags of `npm run bench`.
import { join, resolve } from "node:path";
import { goalLatencyRatePerSec } from "./goals.js";

export type Mode = "full" | "quick" | "smoke";

export interface BenchOptions {
  mode: Mode;
  /** Length of each saga step. */
  stepMs: number;
  /**
   * Length of the step at the goal's latency rate (850/s) where it should be longer than the
   * others: a minute of sustained load holds one autovacuum visit, as any minute does, where a
   * 10-s step either misses it or, on the run's one clock, always holds it.
   */
  goalStepMs: number | undefined;
  /** Length of each closed-loop query run and of the Postgres ceiling. */
  runMs: number;
  rates: number[];
  concurrency: number;
  customers: number;
  products: number;
  /** Concluded orders written into the database before the run (--history). */
  history: number;
  /** Messages in the JetStream ceiling. */
  jetStreamMessages: number;
  /** Services already running (name -> host:port); empty = start the system here. */
  targets: Record<string, string>;
  databaseUrl: string | undefined;
  natsUrl: string | undefined;
  /** Where results go (bench/results unless --out). */
  outDir: string;
  logLevel: "error" | "warn" | "info" | "debug";
  /** Extra environment per service (--env order.DATABASE_POOL_MAX=20), on top of the bench's own. */
  serviceEnv: Record<string, Record<string, string>>;
  /** Folder for a V8 CPU profile of every service (node --cpu-prof), written when the bench stops them. */
  cpuProfDir: string | undefined;
  /** Also load the transports with h2load when it is installed. */
  h2load: boolean;
  /** Time the saga's stages: the saga's streams keep every message of the steps for it (deployed, they are trimmed as their consumers finish). */
  stages: boolean;
  /** Keep stepping up the rates after the system saturated. */
  pastSaturation: boolean;
  /** Compare the transports (a bare connect-node server, the order service's Health/Check); quick runs leave it to full ones. */
  wholeTransportComparison: boolean;
  /** Run each service in a memory cgroup at its pod's limit in the chart (--pod-memory). */
  podMemory: boolean;
  help: boolean;
}

const profiles: Record<Mode, Omit<BenchOptions, "targets" | "databaseUrl" | "natsUrl" | "outDir" | "logLevel" | "help" | "mode" | "h2load" | "stages" | "serviceEnv" | "cpuProfDir" | "podMemory">> = {
  full: {
    stepMs: 10_000,
    goalStepMs: 60_000,
    runMs: 10_000,
    // The rate of the goal's end-to-end p99 (850/s, half of 1,700/s) beside 800/s, the rate of every earlier run.
    rates: [50, 100, 200, 400, 800, goalLatencyRatePerSec, 1_200, 1_700, 2_400, 3_400],
    concurrency: 32,
    customers: 2_000,
    products: 500,
    history: 0,
    jetStreamMessages: 100_000,
    pastSaturation: false,
    wholeTransportComparison: true,
  },
  quick: {
    stepMs: 4_000,
    goalStepMs: undefined,
    runMs: 1_500,
    // Fewer rates rather than shorter steps: the first second of a step near saturation
    // is a ramp, and 3 s steps read 1,700/s ~10 % lower in alternated pairs of runs.
    rates: [50, 400, goalLatencyRatePerSec, 1_200, 1_700, 2_400],
    concurrency: 32,
    customers: 500,
    products: 200,
    history: 0,
    jetStreamMessages: 30_000,
    pastSaturation: false,
    wholeTransportComparison: false,
  },
  smoke: {
    stepMs: 700,
    goalStepMs: undefined,
    runMs: 400,
    rates: [20, 40],
    concurrency: 4,
    customers: 8,
    products: 4,
    history: 0,
    jetStreamMessages: 500,
    pastSaturation: true,
    wholeTransportComparison: true,
  },
};

export const usage = `npm run bench [-- flags]

  --quick                 about a minute: 4 s steps at six rates, 1.5 s query
                          runs, no transport comparison (the goal's GetOrder
                          and CreateOrder figures are kept)
  --smoke                 a few seconds of tiny load (npm test uses it)
  --duration <seconds>    length of each saga step and query run (the
                          850/s step too, unless --goal-step; the query
                          runs too, unless --query-duration)
  --query-duration <seconds>
                          length of each closed-loop query run and of the
                          Postgres ceiling
  --goal-step <seconds>   length of the 850/s step, the goal's end-to-end p99
                          (full runs: 60, one autovacuum_naptime, so the p99
                          holds one autovacuum visit as a minute of load does)
  --rates <r1,r2,...>     saga arrival rates per second, stepped up in order
                          (stops after the first step that saturates)
  --past-saturation       run every rate even after saturation
  --concurrency <n>       calls in flight in the closed-loop query runs
  --customers <n>         customers seeded with wallet funds
  --products <n>          products seeded with large stock
  --history <n>           start from n concluded orders (as confirmed sagas
                          leave them in every service, spread over 30 days)
                          instead of an empty database; not with --target
  --target order=host:port,payment=host:port,...
                          use running services instead of starting the system
                          (needs order and payment; --database-url and
                          --nats-url say where their Postgres and NATS are)
  --database-url <url>    Postgres of the targeted system (default $DATABASE_URL)
  --nats-url <url>        NATS of the targeted system (default $NATS_URL)
  --out <dir>             results folder (default bench/results)
  --cpu-prof <dir>        write a V8 CPU profile of each service to
                          <dir>/<service>/ (node --cpu-prof, one per thread)
  --no-h2load             skip the h2load runs of the transport comparison
                          (they run when h2load is installed: Debian/Ubuntu
                          apt-get install -y nghttp2-client)
  --no-stages             skip the saga's stage timings, for which the saga's
                          streams keep every message of the steps: the order
                          service then trims them during the steps, as deployed
  --pod-memory            run each service in a memory cgroup at its pod's
                          limit in charts/orderflow/values.yaml, as the
                          kernel holds it in a cluster, and report what each
                          was charged and whether the kernel killed it
                          (Linux, as root); not with --target
  --log-level <level>     services' LOG_LEVEL (default info, as npm start)
  --env <service>.<NAME>=<value>
                          extra environment for a service (* = every one),
                          repeatable: --env order.DATABASE_POOL_MAX=20
  --help
`;

/** How long the saga step at this rate runs. */
export function stepLengthMs(options: Pick<BenchOptions, "stepMs" | "goalStepMs">, ratePerSec: number): number {
  return ratePerSec === goalLatencyRatePerSec && options.goalStepMs !== undefined ? options.goalStepMs : options.stepMs;
}

export class UsageError extends Error {
  override name = "UsageError";
}

export function positiveInt(flag: string, raw: string | undefined): number {
  const value = Number(raw);
  if (raw === undefined || !Number.isInteger(value) || value <= 0) throw new UsageError(`${flag} needs a whole number above 0 (got ${JSON.stringify(raw)})`);
  return value;
}

export function positiveSeconds(flag: string, raw: string): number {
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`${flag} needs a number of seconds above 0`);
  return seconds;
}

export function parseOptions(argv: readonly string[], root: string, env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const mode: Mode = argv.includes("--smoke") ? "smoke" : argv.includes("--quick") ? "quick" : "full";
  const options: BenchOptions = {
    mode,
    ...profiles[mode],
    rates: [...profiles[mode].rates],
    targets: {},
    databaseUrl: undefined,
    natsUrl: undefined,
    outDir: join(root, "bench", "results"),
    logLevel: "info",
    h2load: true,
    stages: true,
    serviceEnv: {},
    cpuProfDir: undefined,
    podMemory: false,
    help: false,
  };
  let goalStepGiven = false;
  let queryDurationGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? "";
    const [name, inline] = flag.includes("=") && flag.startsWith("--") ? [flag.slice(0, flag.indexOf("=")), flag.slice(flag.indexOf("=") + 1)] : [flag, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[++i];
      if (next === undefined || next.startsWith("--")) throw new UsageError(`${name} needs a value`);
      return next;
    };
    switch (name) {
      case "--quick":
      case "--smoke":
        break;
      case "--help":
      case "-h":
        options.help = true;
        break;
      case "--duration": {
        const seconds = positiveSeconds(name, value());
        options.stepMs = Math.round(seconds * 1_000);
        if (!queryDurationGiven) options.runMs = Math.round(seconds * 1_000);
        if (!goalStepGiven) options.goalStepMs = undefined;
        break;
      }
      case "--query-duration":
        options.runMs = Math.round(positiveSeconds(name, value()) * 1_000);
        queryDurationGiven = true;
        break;
      case "--goal-step":
        options.goalStepMs = Math.round(positiveSeconds(name, value()) * 1_000);
        goalStepGiven = true;
        break;
      case "--rates": {
        const rates = value()
          .split(",")
          .map((part) => Number(part.trim()));
        if (rates.length === 0 || rates.some((rate) => !Number.isFinite(rate) || rate <= 0)) throw new UsageError("--rates needs rates per second above 0, e.g. 200,400,800");
        options.rates = rates;
        break;
      }
      case "--env": {
        const raw = value();
        const match = /^([a-z]+|\*)\.([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(raw);
        if (!match) throw new UsageError(`--env needs service.NAME=value (or *.NAME=value for every service), e.g. order.DATABASE_POOL_MAX=20 (got ${JSON.stringify(raw)})`);
        const [, service = "", key = "", setting = ""] = match;
        options.serviceEnv[service] = { ...options.serviceEnv[service], [key]: setting };
        break;
      }
      case "--cpu-prof":
        options.cpuProfDir = resolve(value());
        break;
      case "--no-h2load":
        options.h2load = false;
        break;
      case "--no-stages":
        options.stages = false;
        break;
      case "--pod-memory":
        options.podMemory = true;
        break;
      case "--past-saturation":
        options.pastSaturation = true;
        break;
      case "--concurrency":
        options.concurrency = positiveInt(name, value());
        break;
      case "--customers":
        options.customers = positiveInt(name, value());
        break;
      case "--products":
        options.products = positiveInt(name, value());
        break;
      case "--history":
        options.history = positiveInt(name, value());
        break;
      case "--target":
        for (const part of value().split(",")) {
          const [service, address] = part.split("=");
          if (!service || !address || !/^[^:]+:\d+$/.test(address)) throw new UsageError(`--target needs service=host:port pairs, e.g. order=127.0.0.1:8080 (got ${JSON.stringify(part)})`);
          options.targets[service.trim()] = address.trim();
        }
        break;
      case "--database-url":
        options.databaseUrl = value();
        break;
      case "--nats-url":
        options.natsUrl = value();
        break;
      case "--out":
        options.outDir = value();
        break;
      case "--log-level": {
        const level = value();
        if (level !== "error" && level !== "warn" && level !== "info" && level !== "debug") throw new UsageError("--log-level is one of error, warn, info, debug");
        options.logLevel = level;
        break;
      }
      default:
        throw new UsageError(`unknown flag ${JSON.stringify(flag)}\n\n${usage}`);
    }
  }
  if (Object.keys(options.targets).length > 0) {
    if (options.history > 0) throw new UsageError("--history writes into the bench's own database, not a targeted system's: leave out --target");
    if (options.podMemory) throw new UsageError("--pod-memory limits the services the bench starts, not a targeted system's: leave out --target");
    for (const needed of ["order", "payment"]) {
      if (!options.targets[needed]) throw new UsageError(`--target needs ${needed}=host:port too (the bench seeds wallets through payment and orders through order)`);
    }
    options.databaseUrl ??= env["DATABASE_URL"] || "postgres://postgres@127.0.0.1:5432/orderflow";
    options.natsUrl ??= env["NATS_URL"] || "nats://127.0.0.1:4222";
  }
  return options;
}
