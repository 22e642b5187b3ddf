// `npm run bench`: saga throughput and query latency of OrderFlow on this
// machine, beside the raw ceilings (bare grpc-js, JetStream, Postgres) measured
// in the same run. See bench/README.md for how to run it and read it.
//
// This process orchestrates; the load comes from bench/loadgen.ts in a child
// process of its own, the bare servers from bench/echo-server.ts, and the
// services run as `npm start` runs them (tools/system.ts).
import { type ChildProcess, execFileSync, fork, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { surviveDroppedConnections } from "../services/platform/db.js";
import { errorMessage } from "../services/platform/errors.js";
import { jetstream as jetstreamClient, jetstreamManager } from "@nats-io/jetstream";
import { connect as connectNats } from "@nats-io/transport-node";
import { create, toBinary } from "@bufbuild/protobuf";
import { HealthCheckRequestSchema } from "../gen/grpc/health/v1/health_pb.js";
import { GetOrderRequestSchema } from "../gen/orderflow/order/v1/order_pb.js";
import { PaymentService } from "../gen/orderflow/payment/v1/payment_pb.js";
import { dropDatabase, ensureDatabase, withDatabase } from "../tools/databases.js";
import { ensureInfra, infraUrlsFromEnv, type RunningInfra, startPrivate } from "../tools/infra.js";
import { InfraError } from "../tools/infra-error.js";
import { describeExit, LogBuffer, repoRoot, serviceTable, System } from "../tools/system.js";
import { type BenchOptions, parseOptions, usage, UsageError } from "./options.js";
import { busGraceSeconds, type Job, type JobRequest, type JobResponse, type JobResult, type SagaStepResult, type UnaryResult, type UnaryWorkload } from "./protocol.js";
import { findH2load, grpcFrame, type H2loadResult, runH2load, runH2loadAlternated } from "./h2load.js";
import { renderSvg, renderTable } from "./report.js";
import { findPids, ResourceMonitor } from "./resources.js";
import { ANALYZE_CHECK_MS, AutovacuumStandIn } from "./autovacuum.js";
import { seedHistory } from "./history.js";
import { QueueSampler } from "./queues.js";
import { confirmedOrderTimes, stageLatencies, storedTimes } from "./stages.js";
import { countWork, workBetween } from "./work.js";
import { type BenchResult, checkResult, type MachineFacts, type Ratio, resultSchema } from "./results.js";
import { round } from "./stats.js";
import { rejectionNote } from "./throughput.js";

const root = repoRoot();
const began = performance.now();
const log = (message: string): void => void process.stderr.write(`bench | ${((performance.now() - began) / 1000).toFixed(1).padStart(5)}s  ${message}\n`);

/** The environment the bench gives the services on top of `npm start`'s, so that limits meant for one customer do not throttle a load test. */
const benchServiceEnv: Record<string, Record<string, string>> = {
  // Every service: stop within 2 s when the bench is done (npm start allows 10 s).
  "*": { SHUTDOWN_GRACE_MS: "2000" },
  order: { ORDER_RATE_LIMIT_PER_MINUTE: "100000000" },
  fraud: { FRAUD_VELOCITY_MAX_ORDERS: "100000000" },
};
const healthServiceName = "orderflow.order.v1.OrderService";
/** The bare grpc-js server measured in rounds alternated with a cached GetOrder, and how many rounds are kept. */
const alternatedBareName = "Health/Check bare grpc-js, alternated with GetOrder";
const getOrderRounds = 4;

// ---------------------------------------------------------------- child processes

type ResultOf<K extends Job["kind"]> = Extract<JobResult, { kind: K }>;

class LoadGenerator {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (result: JobResult) => void; reject: (error: Error) => void }>();
  private readonly child: ChildProcess;
  private exited = false;

  constructor() {
    this.child = fork(join(root, "dist", "bench", "loadgen.js"), [], { execPath: process.execPath, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.child.on("message", (response: JobResponse) => {
      const waiter = this.waiting.get(response.id);
      if (!waiter) return;
      this.waiting.delete(response.id);
      if (response.ok) waiter.resolve(response.result);
      else waiter.reject(new Error(`load generator: ${response.error}`));
    });
    this.child.on("exit", (code, signal) => {
      this.exited = true;
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`load generator exited (${signal ?? `code ${code}`})`));
      this.waiting.clear();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  run<K extends Job["kind"]>(job: Extract<Job, { kind: K }>): Promise<ResultOf<K>> {
    if (this.exited) return Promise.reject(new Error("load generator is not running"));
    const id = ++this.nextId;
    return new Promise<ResultOf<K>>((resolve, reject) => {
      this.waiting.set(id, {
        resolve: (result) => (result.kind === job.kind ? resolve(result as ResultOf<K>) : reject(new Error(`load generator answered ${result.kind} to ${job.kind}`))),
        reject,
      });
      const request: JobRequest = { id, job };
      this.child.send(request);
    });
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    await Promise.race([this.run({ kind: "stop" }).catch(() => undefined), sleep(3_000)]);
    if (!this.exited) this.child.kill("SIGKILL");
  }
}

interface EchoServer {
  grpcPort: number;
  connectPort?: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

async function startEchoServer(mode: "grpc-js" | "connect"): Promise<EchoServer> {
  const child = spawn(process.execPath, [join(root, "dist", "bench", "echo-server.js"), mode], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const line = await Promise.race([
    new Promise<string>((resolve) => createInterface({ input: child.stdout }).once("line", resolve)),
    exited.then(() => {
      throw new Error(`bare ${mode} server exited before it listened`);
    }),
    sleep(15_000).then(() => {
      throw new Error(`bare ${mode} server did not start within 15 s`);
    }),
  ]);
  const ports = JSON.parse(line) as { grpcPort: number; connectPort?: number };
  return {
    ...ports,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM");
      await Promise.race([exited, sleep(3_000).then(() => child.kill("SIGKILL"))]);
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- facts

function git(args: string[]): string {
  try {
    return execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}

function machineFacts(): MachineFacts {
  const cpuList = cpus();
  return {
    cores: cpuList.length,
    cpuModel: cpuList[0]?.model.trim() ?? "unknown",
    totalMemoryMb: Math.round(totalmem() / 1024 / 1024),
    platform: process.platform,
    kernel: release(),
    node: process.versions.node,
    gitCommit: git(["rev-parse", "--short", "HEAD"]) || "unknown",
    // The bench's own outputs (latest.json, the plot) do not make the code under test dirty.
    gitDirty: git(["status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results"]) !== "",
    date: new Date().toISOString(),
    postgres: "unknown",
    nats: "unknown",
    loadAverageAtStart: loadavg().map((value) => round(value, 2)),
    loadAverageAtEnd: [],
  };
}

// ---------------------------------------------------------------- the system

/** The bench's environment for the services, with --env on top. */
function effectiveServiceEnv(options: BenchOptions): Record<string, Record<string, string>> {
  const merged: Record<string, Record<string, string>> = {};
  const profiling: Record<string, Record<string, string>> = {};
  if (options.cpuProfDir) {
    for (const { name } of serviceTable) profiling[name] = { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${options.cpuProfDir}/${name}` };
  }
  for (const source of [benchServiceEnv, profiling, options.serviceEnv]) {
    for (const [service, env] of Object.entries(source)) merged[service] = { ...merged[service], ...env };
  }
  return merged;
}

interface Endpoints {
  /** host:port per service. */
  address: (service: string) => string;
  databaseUrl: string;
  natsUrl: string;
  pids: Map<string, number | undefined>;
  stop(): Promise<void>;
  logs: LogBuffer | undefined;
}

async function bringUp(options: BenchOptions, cleanups: (() => Promise<void>)[]): Promise<Endpoints> {
  if (Object.keys(options.targets).length > 0) {
    const pids = new Map<string, number | undefined>();
    for (const name of Object.keys(options.targets)) {
      const found = findPids(`dist/services/${name}/main.js`);
      pids.set(name, found.length === 1 ? found[0] : undefined);
    }
    return {
      address: (service) => {
        const address = options.targets[service];
        if (!address) throw new Error(`no --target for ${service}`);
        return address;
      },
      databaseUrl: options.databaseUrl ?? "",
      natsUrl: options.natsUrl ?? "",
      pids,
      stop: async () => undefined,
      logs: undefined,
    };
  }
  const urls = infraUrlsFromEnv();
  const infra: RunningInfra = await ensureInfra({ urls, dataDir: join(root, ".data"), log });
  cleanups.push(() => infra.stop());
  // Fresh every run; smoke runs get their own so they can run beside a real bench.
  const databaseUrl = withDatabase(urls.databaseUrl, options.mode === "smoke" ? `orderflow_bench_smoke_${process.pid}` : "orderflow_bench");
  // Two runs on one database would drop it under each other, and each one's
  // services would work off the other's outbox: hold a lock for the whole run.
  const lock = await lockDatabaseName(urls.databaseUrl, new URL(databaseUrl).pathname.slice(1));
  cleanups.push(lock);
  await dropDatabase(databaseUrl);
  await ensureDatabase(databaseUrl);
  if (options.mode === "smoke") cleanups.push(() => dropDatabase(databaseUrl));
  const dataDir = mkdtempSync(join(tmpdir(), "orderflow-bench-"));
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
  let natsUrl = urls.natsUrl;
  let redisUrl = urls.redisUrl;
  const [nats, redis] = await Promise.all([startPrivate("nats", dataDir), startPrivate("redis", dataDir)]);
  if (nats) {
    natsUrl = nats.url;
    cleanups.push(() => nats.stop());
  } else log(`no nats-server binary: sharing the NATS at ${natsUrl}`);
  if (redis) {
    redisUrl = redis.url;
    cleanups.push(() => redis.stop());
  } else log(`no redis-server binary: sharing the Redis at ${redisUrl}`);
  const logs = new LogBuffer(5_000);
  const serviceEnv = effectiveServiceEnv(options);
  const { ["*"]: everyService = {}, ...perService } = serviceEnv;
  const system = new System({
    infra: { databaseUrl, natsUrl, redisUrl },
    ports: "free",
    inheritEnv: false,
    logLevel: options.logLevel,
    output: logs.sink,
    env: everyService,
    serviceEnv: perService,
    readyTimeoutMs: 60_000,
    stopTimeoutMs: 10_000,
    onUnexpectedExit: (service, code, signal) => log(`${service} stopped unexpectedly (${describeExit({ code, signal })})`),
  });
  // The services' last lines, for looking into errors the bench reports.
  const logFile = join(tmpdir(), `orderflow-bench-${process.pid}-services.log`);
  cleanups.push(async () => {
    writeFileSync(logFile, `${logs.since().join("\n")}\n`);
    log(`last ${logs.size} lines of the services' output: ${logFile}`);
  });
  const killOnExit = (): void => system.killAllNow();
  process.once("exit", killOnExit);
  cleanups.push(async () => {
    await system.stop();
    process.removeListener("exit", killOnExit);
  });
  log(`starting ${"the services"} (database ${new URL(databaseUrl).pathname.slice(1)}, NATS ${natsUrl}, Redis ${redisUrl})…`);
  try {
    await system.up();
  } catch (error) {
    process.stderr.write(`${logs.tail(40).join("\n")}\n`);
    throw error;
  }
  for (const needed of ["order", "payment", "inventory", "fraud"]) {
    if (!system.names.includes(needed)) throw new Error(`service ${needed} is not built (dist/services/${needed}/main.js): the saga needs it`);
  }
  return {
    address: (service) => system.address(service),
    databaseUrl,
    natsUrl,
    pids: new Map(system.services.map((s) => [s.name, s.pid])),
    stop: () => system.stop(),
    logs,
  };
}

/** A session-level advisory lock on the bench database's name, held until the returned function runs. */
async function lockDatabaseName(serverUrl: string, name: string): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: withDatabase(serverUrl, "postgres"), application_name: `orderflow-bench-lock-${process.pid}` });
  client.on("error", () => undefined);
  await client.connect();
  const key = `orderflow-bench:${name}`;
  const locked = (await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtext($1)) AS ok", [key])).rows[0]?.ok === true;
  if (!locked) {
    const holder = await client.query<{ application_name: string }>(
      "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.objid = hashtext($1)::oid AND l.granted LIMIT 1",
      [key],
    );
    await client.end().catch(() => undefined);
    const who = holder.rows[0]?.application_name.replace("orderflow-bench-lock-", "pid ") ?? "another process";
    throw new InfraError(`another npm run bench (${who}) is using the database ${name}: wait for it to finish, or run this one against another Postgres (DATABASE_URL)`);
  }
  return async () => {
    await client.end().catch(() => undefined);
  };
}

// ---------------------------------------------------------------- seeding

async function seed(options: BenchOptions, endpoints: Endpoints, runId: string): Promise<{ customers: string[]; skus: string[]; ms: number }> {
  const started = performance.now();
  const skus = Array.from({ length: options.products }, (_, i) => `BENCH-${i + 1}`);
  const pool = surviveDroppedConnections(new pg.Pool({ connectionString: endpoints.databaseUrl, max: 2, application_name: "orderflow-bench-seed" }));
  try {
    await pool.query(
      `INSERT INTO inventory.products (sku, name, description, price_minor, currency, available)
       SELECT 'BENCH-' || g, 'Bench product ' || g, 'seeded by npm run bench', 100 + (g * 37) % 900, 'USD', 1000000000
       FROM generate_series(1, $1::int) AS g
       ON CONFLICT (sku) DO UPDATE SET available = GREATEST(inventory.products.available, 1000000000)`,
      [options.products],
    );
  } finally {
    await pool.end();
  }
  const customers = Array.from({ length: options.customers }, (_, i) => `bench-${runId}-${i + 1}`);
  const payment = createClient(PaymentService, createGrpcTransport({ baseUrl: `http://${endpoints.address("payment")}` }));
  let index = 0;
  const worker = async (): Promise<void> => {
    while (index < customers.length) {
      const customerId = customers[index++] ?? "";
      await payment.topUpWallet(
        { customerId, amount: { amountMinor: 1_000_000_000n, currency: "USD" }, idempotencyKey: `bench-seed-${customerId}` },
        { timeoutMs: 30_000 },
      );
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return { customers, skus, ms: Math.round(performance.now() - started) };
}

/** Postgres's clock now (ISO): the clock of the orders' and history's times. */
async function databaseNow(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ now: string }>("SELECT to_json(clock_timestamp()) #>> '{}' AS now");
  return rows[0]?.now ?? new Date().toISOString();
}

/** Runs `use` on a one-connection pool to the run's database, closed afterwards. */
async function onDatabase<T>(databaseUrl: string, use: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = surviveDroppedConnections(new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: "orderflow-bench" }));
  try {
    return await use(pool);
  } finally {
    await pool.end();
  }
}

/** Whether the server runs autovacuum. */
function autovacuumIsOn(databaseUrl: string): Promise<boolean> {
  return onDatabase(databaseUrl, async (pool) => (await pool.query<{ autovacuum: string }>("SHOW autovacuum")).rows[0]?.autovacuum === "on");
}

/** Waits until no order is still in flight (a saturated step leaves work behind); returns how many still are. */
function waitForQuiet(databaseUrl: string, customerPrefix: string, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  return onDatabase(databaseUrl, async (pool) => {
    for (;;) {
      const open = Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM orders.orders WHERE concluded_at IS NULL AND starts_with(customer_id, $1)", [customerPrefix])).rows[0]?.n ?? 0);
      if (open === 0 || performance.now() > deadline) return open;
      await sleep(250);
    }
  });
}

function concludedOrderIds(databaseUrl: string, customerPrefix: string, limit: number): Promise<string[]> {
  return onDatabase(databaseUrl, async (pool) => {
    const result = await pool.query<{ id: string }>(
      "SELECT order_id::text AS id FROM orders.orders WHERE status = 'CONFIRMED' AND concluded_at IS NOT NULL AND starts_with(customer_id, $2) ORDER BY seq DESC LIMIT $1",
      [limit, customerPrefix],
    );
    return result.rows.map((row) => row.id);
  });
}

// ---------------------------------------------------------------- the run

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2), root);
  if (options.help) {
    process.stdout.write(usage);
    return;
  }
  const startedAt = new Date().toISOString();
  const machine = machineFacts();
  const runId = Date.now().toString(36);
  const cleanups: (() => Promise<void>)[] = [];
  // One cleanup, awaited by whoever asks: a signal's, and the run's own as it fails for the lack of what the signal stopped.
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const step of cleanups.splice(0).reverse()) await step().catch((error: unknown) => log(`cleanup: ${String(error)}`));
    })());
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      if (stoppedBy) return;
      stoppedBy = signal;
      log(`${signal}: stopping…`);
      void cleanup().then(() => process.exit(130));
    });
  }
  const notes: string[] = [];
  try {
    log(`${options.mode} run: steps of ${options.stepMs / 1000}s at ${options.rates.join(", ")}/s; query runs of ${options.runMs / 1000}s at concurrency ${options.concurrency}`);
    const endpoints = await bringUp(options, cleanups);
    const generator = new LoadGenerator();
    cleanups.push(() => generator.stop());

    log(`seeding ${options.customers} wallets (TopUpWallet) and ${options.products} products…`);
    const seeded = await seed(options, endpoints, runId);
    let history: { history: number; historyMs: number } | undefined;
    if (options.history > 0) {
      log(`writing a history of ${options.history.toLocaleString("en-US")} concluded orders…`);
      const started = performance.now();
      await seedHistory(endpoints.databaseUrl, options.history, seeded.customers, seeded.skus, (written) => {
        if (written < options.history) log(`  ${written.toLocaleString("en-US")} written`);
      });
      history = { history: options.history, historyMs: Math.round(performance.now() - started) };
      notes.push(`the run began on a history of ${options.history.toLocaleString("en-US")} concluded orders (--history), written in ${Math.round(history.historyMs / 1000)} s`);
    }
    const init = await generator.run({
      kind: "init",
      orderAddress: endpoints.address("order"),
      orderUrl: `http://${endpoints.address("order")}`,
      natsUrl: endpoints.natsUrl,
      databaseUrl: endpoints.databaseUrl,
      customers: seeded.customers,
      skus: seeded.skus,
      runId,
    });
    machine.nats = init.natsVersion;
    const pids = new Map(endpoints.pids);
    pids.set("bench-generator", generator.pid);
    const monitor = new ResourceMonitor(pids);
    await sleep(options.mode === "smoke" ? 100 : 1_000);
    monitor.snapshotIdle();
    monitor.start();

    // Ceilings first, while the system is idle.
    log("ceiling: Postgres BEGIN; INSERT; COMMIT at 16 connections…");
    const postgres = await generator.run({ kind: "ceiling-pg", databaseUrl: endpoints.databaseUrl, connections: 16, durationMs: options.runMs });
    machine.postgres = postgres.postgresVersion;
    log("ceiling: JetStream publish → pull consume…");
    const jetstream = await generator.run({ kind: "ceiling-jetstream", natsUrl: endpoints.natsUrl, messages: options.jetStreamMessages, window: 256, payloadBytes: 128 });
    const health: UnaryWorkload = { call: "health", service: healthServiceName };
    const unaryJob = (name: string, protocol: "grpc" | "connect", address: string, workload: UnaryWorkload): Extract<Job, { kind: "unary" }> => ({
      kind: "unary",
      name,
      protocol,
      address,
      url: `http://${address}`,
      concurrency: options.concurrency,
      durationMs: options.runMs,
      workload,
    });
    // Only on the database the bench created: a targeted system's database is not ours to vacuum.
    const autovacuum = Object.keys(options.targets).length === 0 && !(await autovacuumIsOn(endpoints.databaseUrl)) ? new AutovacuumStandIn(endpoints.databaseUrl) : undefined;
    if (autovacuum) {
      cleanups.push(() => autovacuum.close());
      notes.push(`autovacuum is off on this Postgres: the bench stood in for it — VACUUM (ANALYZE) before each saga step and before the query runs, and during the steps ANALYZE of each table autovacuum's threshold picked (checked every ${ANALYZE_CHECK_MS / 1000} s)`);
    }
    // h2load, where installed, loads the same calls from C on one core.
    const h2loadBinary = options.h2load ? findH2load() : undefined;
    const transportH2load: H2loadResult[] = [];
    if (!options.h2load) notes.push("h2load turned off (--no-h2load)");
    else if (!h2loadBinary) {
      const line = "h2load not found (Debian/Ubuntu: apt-get install -y nghttp2-client): transport figures come from the Node generator only";
      log(line);
      notes.push(line);
    }
    const healthBody = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: healthServiceName }));
    const withH2load = async (name: string, protocol: "grpc" | "connect", address: string, path: string, grpcBody: Uint8Array, json: unknown, serverPid: number | undefined): Promise<void> => {
      if (!h2loadBinary) return;
      // A smoke run checks that h2load works once, not every transport.
      if (options.mode === "smoke" && transportH2load.length > 0) return;
      try {
        transportH2load.push(
          await runH2load({
            binary: h2loadBinary,
            name,
            protocol,
            url: `http://${address}${path}`,
            body: protocol === "grpc" ? grpcFrame(grpcBody) : Buffer.from(JSON.stringify(json)),
            concurrency: options.concurrency,
            durationMs: options.runMs,
            warmupMs: options.mode === "smoke" ? 0 : Math.min(1_000, options.runMs / 3),
            ...(serverPid === undefined ? {} : { serverPid }),
          }),
        );
      } catch (error) {
        notes.push(`h2load ${name} (${protocol}): ${errorMessage(error)}`);
      }
    };
    const healthPath = "/grpc.health.v1.Health/Check";
    const healthJson = { service: healthServiceName };
    // The GetOrder goal's figure: a cached GetOrder over gRPC and a bare grpc-js server in
    // alternated rounds, so the ratio does not depend on how busy the machine was when each ran.
    const getOrderBesideBareGrpcJs = async (address: string, getOrderBody: Uint8Array): Promise<void> => {
      if (!h2loadBinary || options.mode === "smoke") {
        await withH2load("GetOrder warm (one id)", "grpc", address, "/orderflow.order.v1.OrderService/GetOrder", getOrderBody, null, endpoints.pids.get("order"));
        return;
      }
      const bare = await startEchoServer("grpc-js");
      try {
        const common = { binary: h2loadBinary, protocol: "grpc" as const, concurrency: options.concurrency, durationMs: Math.max(750, options.runMs / 2), warmupMs: 0 };
        const orderPid = endpoints.pids.get("order");
        transportH2load.push(
          ...(await runH2loadAlternated(
            [
              { ...common, name: alternatedBareName, url: `http://127.0.0.1:${bare.grpcPort}${healthPath}`, body: grpcFrame(healthBody), serverPid: bare.pid },
              { ...common, name: "GetOrder warm (one id)", url: `http://${address}/orderflow.order.v1.OrderService/GetOrder`, body: grpcFrame(getOrderBody), ...(orderPid === undefined ? {} : { serverPid: orderPid }) },
            ],
            getOrderRounds,
          )),
        );
      } catch (error) {
        notes.push(`h2load GetOrder beside bare grpc-js: ${errorMessage(error)}`);
      } finally {
        await bare.stop();
      }
    };
    log("ceiling: bare grpc-js server…");
    const grpcJsServer = await startEchoServer("grpc-js");
    let grpcJs: UnaryResult;
    try {
      grpcJs = await generator.run(unaryJob("Health/Check bare grpc-js", "grpc", `127.0.0.1:${grpcJsServer.grpcPort}`, health));
      await withH2load("Health/Check bare grpc-js", "grpc", `127.0.0.1:${grpcJsServer.grpcPort}`, healthPath, healthBody, healthJson, grpcJsServer.pid);
    } finally {
      await grpcJsServer.stop();
    }
    const transport: UnaryResult[] = [];
    if (options.wholeTransportComparison) {
      log("transport: bare connect-node server (gRPC, Connect)…");
      const connectServer = await startEchoServer("connect");
      try {
        transport.push(await generator.run(unaryJob("Health/Check bare connect-node", "grpc", `127.0.0.1:${connectServer.grpcPort}`, health)));
        transport.push(await generator.run(unaryJob("Health/Check bare connect-node", "connect", `127.0.0.1:${connectServer.connectPort ?? 0}`, health)));
        await withH2load("Health/Check bare connect-node", "grpc", `127.0.0.1:${connectServer.grpcPort}`, healthPath, healthBody, healthJson, connectServer.pid);
        await withH2load("Health/Check bare connect-node", "connect", `127.0.0.1:${connectServer.connectPort ?? 0}`, healthPath, healthBody, healthJson, connectServer.pid);
      } finally {
        await connectServer.stop();
      }
      log("transport: order service's Health/Check (gRPC, Connect)…");
      transport.push(await generator.run(unaryJob("Health/Check order service", "grpc", endpoints.address("order"), health)));
      transport.push(await generator.run(unaryJob("Health/Check order service", "connect", endpoints.address("order"), health)));
      await withH2load("Health/Check order service", "grpc", endpoints.address("order"), healthPath, healthBody, healthJson, endpoints.pids.get("order"));
      await withH2load("Health/Check order service", "connect", endpoints.address("order"), healthPath, healthBody, healthJson, endpoints.pids.get("order"));
    } else {
      notes.push("quick run: the transport comparison (a bare connect-node server, the order service's Health/Check) is left to full runs; the goal's GetOrder and CreateOrder figures are here");
    }

    // Saga steps, open loop, after a warm-up at the first rate: the saga's first orders
    // open connections and run cold code, which is not the steady state a step measures.
    const maxInFlightAt = (rate: number): number => Math.max(100, rate * 5);
    const firstRate = options.rates[0] ?? 0;
    const sagaWarmupMs = options.mode === "smoke" ? 0 : Math.min(5_000, options.stepMs / 2);
    if (sagaWarmupMs > 0 && firstRate > 0) {
      log(`saga warm-up: ${firstRate}/s for ${sagaWarmupMs / 1000}s (not recorded)…`);
      await generator.run({ kind: "saga-step", index: -1, ratePerSec: firstRate, durationMs: sagaWarmupMs, drainTimeoutMs: 15_000, maxInFlight: maxInFlightAt(firstRate), warmupMs: 0 });
      notes.push(`the saga steps followed ${sagaWarmupMs / 1000} s of unrecorded load at ${firstRate}/s`);
    }
    const steps: BenchResult["saga"]["steps"] = [];
    /** Each step's orders were created between these (Postgres's clock). */
    const stepWindows: Array<{ from: string; to: string }> = [];
    const nats = await connectNats({ servers: endpoints.natsUrl, name: "orderflow-bench-queues" });
    cleanups.push(() => nats.close());
    const jsm = await jetstreamManager(nats);
    for (const [index, rate] of options.rates.entries()) {
      log(`saga: ${rate}/s for ${options.stepMs / 1000}s…`);
      await autovacuum?.vacuum();
      const createdFrom = await onDatabase(endpoints.databaseUrl, databaseNow);
      const workBefore = await onDatabase(endpoints.databaseUrl, (pool) => countWork(jsm, pool));
      const before = monitor.cpu();
      const wakeUpsBefore = monitor.wakeUps();
      const waitsBefore = monitor.runQueueWaits();
      const t0 = performance.now();
      const queues = await new QueueSampler(jsm).start();
      const stopAnalyzing = autovacuum?.analyzeWhileRunning();
      const step: SagaStepResult = await generator.run({
        kind: "saga-step",
        index,
        ratePerSec: rate,
        durationMs: options.stepMs,
        drainTimeoutMs: options.mode === "smoke" ? 15_000 : Math.min(30_000, Math.max(8_000, options.stepMs * 2)),
        maxInFlight: maxInFlightAt(rate),
        warmupMs: Math.min(1_000, options.stepMs / 4),
      });
      await stopAnalyzing?.();
      // CPU and queues over the arrivals and the drain.
      const cpuAfter = monitor.cpu();
      const concluded = step.confirmed + step.rejected;
      const elapsedMs = performance.now() - t0;
      const serviceCpuPercent = ResourceMonitor.percentOfElapsed(before, cpuAfter, elapsedMs);
      const runQueueWaitPercent = ResourceMonitor.percentOfElapsed(waitsBefore, monitor.runQueueWaits(), elapsedMs);
      const cpuMsPerSaga = ResourceMonitor.cpuMsPer(before, cpuAfter, concluded);
      const wakeUpsPerSaga = ResourceMonitor.wakeUpsPer(wakeUpsBefore, monitor.wakeUps(), concluded);
      const stepQueues = await queues.stop();
      const work = workBetween(workBefore, await onDatabase(endpoints.databaseUrl, (pool) => countWork(jsm, pool)), concluded);
      stepWindows.push({ from: createdFrom, to: await onDatabase(endpoints.databaseUrl, databaseNow) });
      if (!stepQueues) notes.push(`saga step ${rate}/s: the JetStream consumers could not be sampled (no queue figures)`);
      const rejections = rejectionNote(rate, step.confirmed, step.rejected);
      if (rejections) notes.push(rejections);
      const reasons: string[] = [];
      const refused = step.createErrors["RESOURCE_EXHAUSTED"] ?? 0;
      const errors = Object.values(step.createErrors).reduce((a, b) => a + b, 0) - refused;
      if (step.completedPerSec < 0.85 * rate) reasons.push(`completed ${Math.round(step.completedPerSec)}/s < 85 % of offered`);
      if (!step.drained) reasons.push(`${step.unfinished} orders still open ${Math.round(step.drainMs / 1000)}s after the step`);
      if (refused > 0.01 * step.scheduled) reasons.push(`${refused} CreateOrders refused at the bound of orders in progress`);
      if (errors > 0.01 * step.scheduled) reasons.push(`${errors} CreateOrder errors`);
      if (step.dropped > 0) reasons.push(`${step.dropped} arrivals dropped at the in-flight cap`);
      steps.push({ ...step, serviceCpuPercent, runQueueWaitPercent, cpuMsPerSaga, wakeUpsPerSaga, queues: stepQueues ?? [], work, stages: [], saturated: reasons.length > 0, saturationReason: reasons.join("; ") });
      log(
        `  accepted ${step.acceptedPerSec}/s, completed ${step.completedPerSec}/s, backlog ${step.backlogAtEnd}, e2e p99 ${step.e2eLatency.p99} ms${reasons.length > 0 ? ` — saturated: ${reasons.join("; ")}` : ""}`,
      );
      if (reasons.length > 0 && !options.pastSaturation) break;
    }
    const maxCompletedPerSec = Math.max(0, ...steps.map((s) => s.completedPerSec));
    const sustainedPerSec = Math.max(0, ...steps.filter((s) => !s.saturated).map((s) => s.offeredPerSec));

    // Queries, on the orders the saga steps left, once the system has finished them.
    const quietTimeoutMs = options.mode === "smoke" ? 10_000 : 60_000;
    log("waiting for the orders still in flight to conclude…");
    const stillOpen = await waitForQuiet(endpoints.databaseUrl, `bench-${runId}-`, quietTimeoutMs);
    if (stillOpen > 0) notes.push(`${stillOpen} orders were still in flight ${quietTimeoutMs / 1000}s after the last saga step: the query runs shared the machine with them`);
    log("saga stages: when each step's commands and replies were stored…");
    await onDatabase(endpoints.databaseUrl, async (pool) => {
      const ordersByStep = await Promise.all(stepWindows.map((window) => confirmedOrderTimes(pool, `bench-${runId}-`, window.from, window.to)));
      // The last conclusion events are published after the last CONFIRMED write began.
      const lastWriteMs = ordersByStep.flat().reduce((last, o) => Math.max(last, o.confirmedMs), 0);
      const first = stepWindows[0];
      if (!first || lastWriteMs === 0) return;
      // One read of the streams over every step: the steps' windows follow each other.
      const stored = await storedTimes(jetstreamClient(nats), Date.parse(first.from) - 1_000, lastWriteMs + 10_000);
      for (const [index, step] of steps.entries()) {
        const orders = ordersByStep[index] ?? [];
        if (orders.length > 0) step.stages = stageLatencies(orders, stored);
      }
    }).catch((err: unknown) => notes.push(`the saga's stages could not be read back (a targeted system's NATS may refuse the bench a consumer of its streams): ${errorMessage(err)}`));
    await autovacuum?.vacuum();
    const ids = await concludedOrderIds(endpoints.databaseUrl, `bench-${runId}-`, 200_000);
    const warmIds = ids.slice(0, Math.max(1, Math.min(100, Math.floor(ids.length / 4))));
    const coldIds = ids.slice(warmIds.length);
    const coldGrpc = coldIds.filter((_, i) => i % 2 === 0);
    const coldConnect = coldIds.filter((_, i) => i % 2 === 1);
    if (ids.length === 0) notes.push("no CONFIRMED orders to query: the GetOrder runs made no calls");
    const queries: UnaryResult[] = [];
    const order = endpoints.address("order");
    for (const protocol of ["grpc", "connect"] as const) {
      log(`queries over ${protocol}: GetOrder warm, GetOrder cold, ListOrders…`);
      queries.push(await generator.run(unaryJob("GetOrder warm", protocol, order, { call: "getOrder", ids: ids.length > 0 ? warmIds : [], once: false })));
      queries.push(await generator.run(unaryJob("GetOrder cold", protocol, order, { call: "getOrder", ids: protocol === "grpc" ? coldGrpc : coldConnect, once: true })));
      queries.push(await generator.run(unaryJob("ListOrders", protocol, order, { call: "listOrders", pageSize: 20 })));
    }
    const warmId = warmIds[0];
    if (warmId !== undefined && ids.length > 0) {
      const getOrderBody = toBinary(GetOrderRequestSchema, create(GetOrderRequestSchema, { orderId: warmId }));
      await getOrderBesideBareGrpcJs(order, getOrderBody);
      await withH2load("GetOrder warm (one id)", "connect", order, "/orderflow.order.v1.OrderService/GetOrder", getOrderBody, { orderId: warmId }, endpoints.pids.get("order"));
    }
    log("CreateOrder closed loop over gRPC…");
    queries.push(await generator.run(unaryJob("CreateOrder", "grpc", order, { call: "createOrder" })));
    const resources = monitor.stop();

    // Ratios.
    const find = (name: string, protocol: "grpc" | "connect", list: UnaryResult[] = queries): UnaryResult | undefined => list.find((q) => q.name === name && q.protocol === protocol);
    const ratio = (name: string, system: number, ceiling: number, unit: string, note: string): Ratio => ({
      name,
      system: round(system, 1),
      ceiling: round(ceiling, 1),
      ratio: ceiling > 0 ? round(system / ceiling, 3) : 0,
      unit,
      note,
    });
    const ratios: Ratio[] = [];
    const vsGrpcJs = (label: string, q: UnaryResult | undefined): void => {
      const note = /^(CreateOrder|GetOrder)/.test(label) ? "goal ≥ 0.8" : label.startsWith("Health/Check bare") ? "transport alone" : label.startsWith("Health/Check") ? "transport + platform server stack" : "";
      if (q) ratios.push(ratio(`${label} vs bare grpc-js`, q.perSec, grpcJs.perSec, "req/s", note));
    };
    vsGrpcJs("CreateOrder gRPC", find("CreateOrder", "grpc"));
    vsGrpcJs("GetOrder warm gRPC", find("GetOrder warm", "grpc"));
    vsGrpcJs("GetOrder warm Connect", find("GetOrder warm", "connect"));
    vsGrpcJs("GetOrder cold gRPC", find("GetOrder cold", "grpc"));
    vsGrpcJs("ListOrders gRPC", find("ListOrders", "grpc"));
    for (const q of transport) vsGrpcJs(`${q.name} ${q.protocol === "grpc" ? "gRPC" : "Connect"}`, q);
    ratios.push(
      ratio("sagas/s vs Postgres tx/s", maxCompletedPerSec, postgres.txPerSec, "sagas/s", maxCompletedPerSec > 0 ? `≈ ${round(postgres.txPerSec / maxCompletedPerSec, 1)} raw transactions' worth per saga` : "no saga completed"),
    );
    ratios.push(
      ratio(
        "sagas/s vs JetStream round trips/s",
        maxCompletedPerSec,
        jetstream.roundTripMsgsPerSec,
        "sagas/s",
        maxCompletedPerSec > 0 ? `≈ ${round(jetstream.roundTripMsgsPerSec / maxCompletedPerSec, 1)} raw messages' worth per saga` : "no saga completed",
      ),
    );
    ratios.push(ratio("sagas/s vs the goal", maxCompletedPerSec, 1_700, "sagas/s", "goal: 1,700 sagas/s completed on one 2-core machine"));

    const h2GrpcJs = transportH2load.find((t) => t.name === "Health/Check bare grpc-js");
    const alternatedGrpcJs = transportH2load.find((t) => t.name === alternatedBareName);
    if (h2GrpcJs) {
      for (const t of transportH2load) {
        if (t === h2GrpcJs || t === alternatedGrpcJs) continue;
        // Measured in rounds alternated with a bare grpc-js server: compared with that one.
        const ceiling = t.alternated && alternatedGrpcJs ? alternatedGrpcJs : h2GrpcJs;
        const note = t.alternated ? `h2load, ${getOrderRounds} alternated rounds (median); goal ≥ 0.8` : t.name.startsWith("GetOrder") ? "h2load; goal ≥ 0.8" : t.name.includes("bare") ? "h2load; transport alone" : "h2load; transport + platform server stack";
        const call = `${t.name} ${t.protocol === "grpc" ? "gRPC" : "Connect"} vs bare grpc-js`;
        ratios.push(ratio(`h2load: ${call}`, t.perSec, ceiling.perSec, "req/s", note));
        // The same call as calls per second of the server's CPU: steadier than req/s on a shared machine.
        const bareCpu = ceiling.serverCpuUsPerCall;
        if (bareCpu !== null && t.serverCpuUsPerCall !== null) {
          ratios.push(ratio(`h2load CPU: ${call}`, round(1e6 / t.serverCpuUsPerCall, 1), round(1e6 / bareCpu, 1), "calls/CPU-s", t.alternated ? `server CPU per call, ${getOrderRounds} alternated rounds (median); goal ≥ 0.8` : t.name.startsWith("GetOrder") ? "server CPU per call; goal ≥ 0.8" : "server CPU per call"));
        }
      }
    }
    for (const q of [...queries, ...transport, grpcJs]) {
      if (q.generatorCpuPercent >= 90) notes.push(`${q.name} (${q.protocol}): the generator used ${q.generatorCpuPercent} % of a core — this figure may be the generator's limit, not the server's`);
    }
    for (const s of steps) if (s.detectedByPoll > 0) notes.push(`saga step ${s.offeredPerSec}/s: ${s.detectedByPoll} conclusions found by the Postgres backstop, not seen on the bus within ${busGraceSeconds} s of their commit (their e2e latency is when the backstop found them)`);
    machine.loadAverageAtEnd = loadavg().map((value) => round(value, 2));
    // The 1-minute average: the 5- and 15-minute ones remember work that has already stopped.
    const busy = machine.loadAverageAtStart[0] ?? 0;
    if (busy > machine.cores * 0.5) {
      notes.unshift(`the machine was busy before the run (load average ${machine.loadAverageAtStart.join(", ")} on ${machine.cores} cores): other processes competed for the CPU, so these figures understate what it can do`);
    }
    if (options.mode === "smoke") notes.push("smoke run: a few seconds of tiny load, for checking that the bench works — not figures to quote");
    if (endpoints.pids.size > 0 && [...endpoints.pids.values()].some((pid) => pid === undefined)) notes.push("some service pids were not found: their memory is unknown");

    const result: BenchResult = {
      schema: resultSchema,
      mode: options.mode,
      startedAt,
      finishedAt: new Date().toISOString(),
      machine,
      config: {
        stepMs: options.stepMs,
        runMs: options.runMs,
        rates: options.rates,
        concurrency: options.concurrency,
        customers: options.customers,
        products: options.products,
        target: Object.keys(options.targets).length > 0 ? options.targets : null,
        logLevel: options.logLevel,
        serviceEnv: Object.keys(options.targets).length > 0 ? {} : effectiveServiceEnv(options),
        generator: "Node child process: gRPC over node:http2 (bench/grpc-wire.ts), connect-node client over HTTP/1.1 JSON (Connect)",
      },
      seed: { customers: seeded.customers.length, products: seeded.skus.length, ms: seeded.ms, ...history },
      saga: { steps, maxCompletedPerSec, sustainedPerSec, saturated: steps.some((s) => s.saturated) },
      queries,
      transport,
      ceilings: { grpcJs, postgres, jetstream },
      transportH2load,
      tools: { h2load: h2loadBinary ?? null },
      ratios,
      resources,
      notes,
    };
    const problems = checkResult(result);
    if (problems.length > 0) notes.push(`result check: ${problems.join("; ")}`);

    mkdirSync(options.outDir, { recursive: true });
    const json = `${JSON.stringify(result, null, 2)}\n`;
    const stamp = `${machine.date.slice(0, 10)}-${machine.gitCommit}${options.mode === "full" ? "" : `-${options.mode}`}`;
    writeFileSync(join(options.outDir, `${stamp}.json`), json);
    writeFileSync(join(options.outDir, "latest.json"), json);
    writeFileSync(join(options.outDir, "latency-vs-load.svg"), renderSvg(result));
    process.stdout.write(`\n${renderTable(result)}\n\n`);
    log(`results: ${join(options.outDir, `${stamp}.json`)}, latest.json, latency-vs-load.svg`);
    if (options.cpuProfDir) log(`CPU profiles: ${options.cpuProfDir}/<service>/*.cpuprofile (one per thread) once the services have stopped (open in Chrome DevTools or speedscope)`);
  } finally {
    await cleanup();
  }
}

/** The signal that stopped the run, if one did: what fails after it is its doing, not an error to report. */
let stoppedBy: NodeJS.Signals | undefined;

main().then(
  () => process.exit(0),
  (error: unknown) => {
    if (stoppedBy) process.exit(130);
    const message = error instanceof UsageError || error instanceof InfraError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`npm run bench: ${message}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
