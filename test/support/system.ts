// The system under test: every end-to-end test file starts its own copy of
// OrderFlow (tools/system.ts) on free ports, with its own Postgres database
// (orderflow_test_<pid>_<n>, dropped afterwards) and, where the binaries are
// installed, its own NATS and Redis (and, for tests that restart it, its own
// Postgres), so test files can run in parallel and beside a running `npm start`
// without sharing state.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, inject } from "vitest";
import { dropDatabase, ensureDatabase, withDatabase } from "../../tools/databases.js";
import { type InfraUrls, type PrivateServer, startPrivate } from "../../tools/infra.js";
import { LogBuffer, System, type SystemOptions } from "../../tools/system.js";

export { testDatabasePrefix } from "./names.js";
import { testDatabasePrefix, testDataDirPrefix } from "./names.js";

export interface TestSystemOptions {
  /** Services to run (default: every built one). */
  services?: string[];
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** Extra environment for one service. */
  serviceEnv?: Record<string, Record<string, string>>;
  /** Private NATS and Redis on free ports (default true; falls back to the shared ones without binaries). */
  privateBus?: boolean;
  /** A private Postgres on a free port, for tests that restart it (default false; needs initdb and pg_ctl). */
  privatePostgres?: boolean;
  logLevel?: SystemOptions["logLevel"];
  /** More flags for the services' node, after their own. */
  nodeFlags?: readonly string[];
  /** Restart crashed services, and hear of crashes and restarts (as npm start does). */
  supervision?: Pick<SystemOptions, "restart" | "onUnexpectedExit" | "onRestarted">;
}

export interface TestSystem {
  system: System;
  /** The URLs the services were given (the database is this file's own). */
  infra: InfraUrls;
  logs: LogBuffer;
  /** Base URL of a service, e.g. http://127.0.0.1:41234 */
  url(service: string): string;
  /** host:port of a service (grpc-js). */
  address(service: string): string;
  /** Prints the services' output (since a mark from logs.size) to stderr. */
  printLogs(title: string, mark?: number): void;
  /** Private servers of this system: NATS and Redis (absent where their binaries are not installed), Postgres when asked for. */
  servers: { nats?: PrivateServer; redis?: PrivateServer; postgres?: PrivateServer };
  /** Stops the services and removes the database and private servers. */
  stop(): Promise<void>;
}

let counter = 0;

/**
 * Postgres, Redis and NATS URLs for this run, made reachable by global-setup.ts.
 * Integration tests that talk to them directly take their URLs from here.
 */
export function sharedInfra(): InfraUrls {
  const urls = inject("infra");
  if (urls) return urls;
  const reason = inject("infraError");
  throw new Error(reason ?? "test/support/global-setup.ts did not run: run the tests with npm test (or vitest with vitest.config.ts)");
}

/** Starts a private copy of the system for this test file. */
export async function startTestSystem(options: TestSystemOptions = {}): Promise<TestSystem> {
  const shared = sharedInfra();
  const databaseName = `${testDatabasePrefix}${process.pid}_${++counter}_${Date.now() % 100_000}`;
  let databaseUrl = withDatabase(shared.databaseUrl, databaseName);
  const dataDir = mkdtempSync(join(tmpdir(), `${testDataDirPrefix}${process.pid}-`));
  const cleanups: (() => Promise<void>)[] = [];
  const logs = new LogBuffer();
  const printLogs = (title: string, mark = 0) => {
    const lines = logs.since(mark);
    process.stderr.write(`\n---- ${title}: service output (${lines.length} lines) ----\n${lines.join("\n")}\n---- end of service output ----\n`);
  };
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch((error: unknown) => process.stderr.write(`test cleanup: ${String(error)}\n`));
    cleanups.length = 0;
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const servers: TestSystem["servers"] = {};
    if (options.privatePostgres) {
      const postgres = await startPrivate("postgres", dataDir);
      if (!postgres) throw new Error("this test restarts Postgres: it needs the PostgreSQL server binaries (initdb, pg_ctl) installed");
      servers.postgres = postgres;
      databaseUrl = withDatabase(postgres.url, databaseName);
      cleanups.push(() => postgres.stop());
    }
    await ensureDatabase(databaseUrl);
    cleanups.push(() => dropDatabase(databaseUrl));
    let { natsUrl, redisUrl } = shared;
    if (options.privateBus ?? true) {
      const [nats, redis] = await Promise.all([startPrivate("nats", dataDir), startPrivate("redis", dataDir)]);
      if (nats) {
        servers.nats = nats;
        natsUrl = nats.url;
        cleanups.push(() => nats.stop());
      }
      if (redis) {
        servers.redis = redis;
        redisUrl = redis.url;
        cleanups.push(() => redis.stop());
      }
    }
    const infra: InfraUrls = { databaseUrl, natsUrl, redisUrl };
    const system = new System({
      infra,
      ports: "free",
      inheritEnv: false,
      logLevel: options.logLevel ?? "info",
      output: logs.sink,
      readyTimeoutMs: 45_000,
      stopTimeoutMs: 10_000,
      env: { SHUTDOWN_GRACE_MS: "2000", ...options.env },
      ...(options.services ? { services: options.services } : {}),
      ...(options.serviceEnv ? { serviceEnv: options.serviceEnv } : {}),
      ...(options.nodeFlags ? { nodeFlags: options.nodeFlags } : {}),
      ...options.supervision,
    });
    const killOnExit = () => system.killAllNow();
    process.once("exit", killOnExit);
    cleanups.push(async () => {
      await system.stop();
      process.removeListener("exit", killOnExit);
    });
    try {
      await system.up();
    } catch (error) {
      printLogs("system failed to start");
      throw error;
    }
    return {
      system,
      infra,
      logs,
      url: (service) => system.url(service),
      address: (service) => system.address(service),
      printLogs,
      servers,
      stop: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * Starts the system once for the test file (beforeAll), stops it afterwards
 * (afterAll) and prints the services' output of each failed test. Returns a
 * getter, to be called inside tests.
 */
export function useSystem(options: TestSystemOptions = {}): () => TestSystem {
  let current: TestSystem | undefined;
  beforeAll(async () => {
    current = await startTestSystem(options);
  });
  afterAll(async () => {
    await current?.stop();
    current = undefined;
  });
  beforeEach((context) => {
    const mark = current?.logs.size ?? 0;
    context.onTestFailed(() => current?.printLogs(`"${context.task.name}" failed`, mark));
  });
  return () => {
    if (!current) throw new Error("the system is not running (did beforeAll fail?)");
    return current;
  };
}
