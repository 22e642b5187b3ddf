import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { dropDatabase, ensureDatabase, withDatabase } from "../tools/databases.js";
import { ensureInfra, infraUrlsFromEnv, type PrivateRunner, type RunningInfra, startPrivate } from "../tools/infra.js";
import { InfraError } from "../tools/infra-error.js";
import type { MemoryCgroupUsage } from "../tools/memory-cgroup.js";
import { describeExit, LogBuffer, repoRoot, serviceTable, System } from "../tools/system.js";
import { log } from "./log.js";
import type { BenchOptions } from "./options.js";
import { chartMemoryLimitsMb } from "./pod-memory.js";
import { findPids } from "./resources.js";

/** The environment the bench gives the services on top of `npm start`'s, so that limits meant for one customer do not throttle a load test. */
const benchServiceEnv: Record<string, Record<string, string>> = {
  // Every service: stop within 2 s when the bench is done (npm start allows 10 s).
  "*": { SHUTDOWN_GRACE_MS: "2000" },
  order: { ORDER_RATE_LIMIT_PER_MINUTE: "100000000" },
  fraud: { FRAUD_VELOCITY_MAX_ORDERS: "100000000" },
};

/** The bench's environment for the services, with --env on top. */
export function effectiveServiceEnv(options: BenchOptions): Record<string, Record<string, string>> {
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

export interface Endpoints {
  /** host:port per service. */
  address: (service: string) => string;
  databaseUrl: string;
  natsUrl: string;
  pids: Map<string, number | undefined>;
  /** The private NATS's and Redis's processes, where the bench started its own. */
  infraPids: Map<"nats" | "redis", number | undefined>;
  /** What a service's memory cgroup was charged (--pod-memory); undefined when it runs in none. */
  memoryCgroup(service: string): MemoryCgroupUsage | undefined;
  stop(): Promise<void>;
  logs: LogBuffer | undefined;
}

/** What the services run under (`commandPrefix`, e.g. valgrind), and how long each may take to serve; the same for the private NATS and Redis. */
export interface ServiceRunner {
  commandPrefix: string[];
  /** More flags for the services' node (tools/system.ts). */
  nodeFlags?: readonly string[];
  readyTimeoutMs: number;
  infra?: (name: "nats" | "redis") => PrivateRunner;
}

/**
 * The system the bench loads: the services given by --target, or its own, started the way
 * `npm start` starts them on a fresh database and private NATS and Redis (their stops are
 * pushed onto `cleanups`).
 */
export async function bringUp(options: BenchOptions, cleanups: (() => Promise<void>)[], runner: ServiceRunner = { commandPrefix: [], readyTimeoutMs: 60_000 }): Promise<Endpoints> {
  const root = repoRoot();
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
      infraPids: new Map(),
      memoryCgroup: () => undefined,
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
  const [nats, redis] = await Promise.all([startPrivate("nats", dataDir, runner.infra?.("nats")), startPrivate("redis", dataDir, runner.infra?.("redis"))]);
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
  const memoryLimitsMb = options.podMemory ? chartMemoryLimitsMb(root) : undefined;
  if (memoryLimitsMb) log(`each service in a memory cgroup at its pod's limit in the chart: ${Object.entries(memoryLimitsMb).map(([name, mb]) => `${name} ${mb} MiB`).join(", ")}`);
  const system = new System({
    infra: { databaseUrl, natsUrl, redisUrl },
    ports: "free",
    inheritEnv: false,
    logLevel: options.logLevel,
    output: logs.sink,
    env: everyService,
    serviceEnv: perService,
    readyTimeoutMs: runner.readyTimeoutMs,
    stopTimeoutMs: 10_000,
    memoryLimitsMb,
    commandPrefix: runner.commandPrefix,
    ...(runner.nodeFlags ? { nodeFlags: runner.nodeFlags } : {}),
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
    infraPids: new Map([
      ["nats", nats?.pid],
      ["redis", redis?.pid],
    ]),
    memoryCgroup: (service) => (system.names.includes(service) ? system.memoryCgroupUsage(service) : undefined),
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
