// Postgres, Redis and NATS for running OrderFlow on one machine: use them where
// they already run, start them from installed binaries (data in a git-ignored
// folder) where they don't, or stop with one line saying what to install.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findBinary, findPostgresBin } from "./binaries.js";
import { databaseName, ensureDatabase } from "./databases.js";
import { InfraError } from "./infra-error.js";
import { type Endpoint, freePort, isReachable } from "./ports.js";
import { runUnder } from "./run-under.js";
import { stopWithParent } from "./stop-with-parent.js";

export interface InfraUrls {
  databaseUrl: string;
  redisUrl: string;
  natsUrl: string;
}

export const defaultInfraUrls: InfraUrls = {
  databaseUrl: "postgres://postgres@127.0.0.1:5432/orderflow",
  redisUrl: "redis://127.0.0.1:6379",
  natsUrl: "nats://127.0.0.1:4222",
};

/** DATABASE_URL, REDIS_URL and NATS_URL from the environment, with the local defaults. */
export function infraUrlsFromEnv(env: NodeJS.ProcessEnv = process.env): InfraUrls {
  return {
    databaseUrl: env["DATABASE_URL"] || defaultInfraUrls.databaseUrl,
    redisUrl: env["REDIS_URL"] || defaultInfraUrls.redisUrl,
    natsUrl: env["NATS_URL"] || defaultInfraUrls.natsUrl,
  };
}

export type InfraName = "postgres" | "redis" | "nats";

const defaultPorts: Record<InfraName, number> = { postgres: 5432, redis: 6379, nats: 4222 };

/**
 * A server's data folder: .data/<name> on its default port, .data/<name>-<port> on another, so
 * that a second copy (PORT_OFFSET and URLs of its own, as README says) keeps its own data.
 */
export function serverDataDir(dataDir: string, name: InfraName, port: number): string {
  return join(dataDir, port === defaultPorts[name] ? name : `${name}-${port}`);
}

export interface InfraOptions {
  urls: InfraUrls;
  /** Folder for the data of servers started here (git-ignored `.data/`). */
  dataDir: string;
  log?: (message: string) => void;
  /** How long a started server may take to accept connections. */
  startTimeoutMs?: number;
  /**
   * Start Redis and NATS in a process group of their own (default): a terminal's Ctrl-C then
   * reaches only `npm start`, which stops the services before the servers. The tests start
   * theirs in the test run's group, so that a Ctrl-C of the run stops them with it. (pg_ctl
   * always gives Postgres a session of its own.)
   */
  ownProcessGroup?: boolean;
  /**
   * Folders to look for server binaries in. Default: PATH, the usual sbin
   * folders and /usr/lib/postgresql/<version>/bin.
   */
  searchPath?: string[];
}

export interface RunningInfra {
  urls: InfraUrls;
  /** The servers this call started (empty when all were already running). */
  started: InfraName[];
  /** Stops what was started here, in reverse order; safe to call twice. */
  stop(): Promise<void>;
}

interface Started {
  name: InfraName;
  /** The server's own process, where it is our child (Redis, NATS). */
  pid?: number;
  /** Where its data went, when that is not where it was asked for (a Postgres under /tmp). */
  movedDataDir?: string;
  stop(): Promise<void>;
  /** Last-resort synchronous stop for process exit. */
  kill(): void;
}

const localHosts = new Set(["localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0", ""]);
const noop = (): void => undefined;

/**
 * Makes sure Postgres, Redis and NATS answer at the given URLs, starting local
 * ones from installed binaries when they don't, and that the database named in
 * the Postgres URL exists.
 */
export async function ensureInfra(options: InfraOptions): Promise<RunningInfra> {
  const log = options.log ?? noop;
  const timeout = options.startTimeoutMs ?? 60_000;
  const ownGroup = options.ownProcessGroup ?? true;
  const plans: { name: InfraName; label: string; variable: string; url: string; endpoint: Endpoint; start: () => Promise<Started> }[] = [
    {
      name: "postgres",
      label: "Postgres",
      variable: "DATABASE_URL",
      url: options.urls.databaseUrl,
      endpoint: endpointOf(options.urls.databaseUrl, defaultPorts.postgres),
      start: () => startPostgres(endpointOf(options.urls.databaseUrl, defaultPorts.postgres), options.dataDir, timeout, options.searchPath),
    },
    {
      name: "redis",
      label: "Redis",
      variable: "REDIS_URL",
      url: options.urls.redisUrl,
      endpoint: endpointOf(options.urls.redisUrl, defaultPorts.redis),
      start: () => startRedis(endpointOf(options.urls.redisUrl, defaultPorts.redis), options.dataDir, timeout, options.searchPath, { ownGroup }),
    },
    {
      name: "nats",
      label: "NATS",
      variable: "NATS_URL",
      url: options.urls.natsUrl,
      endpoint: endpointOf(options.urls.natsUrl, defaultPorts.nats),
      start: () => startNats(endpointOf(options.urls.natsUrl, defaultPorts.nats), options.dataDir, timeout, options.searchPath, { ownGroup }),
    },
  ];

  const started: Started[] = [];
  const results = await Promise.allSettled(
    plans.map(async (plan) => {
      if (await isReachable(plan.endpoint)) return;
      const where = `${plan.endpoint.host}:${plan.endpoint.port}`;
      if (!localHosts.has(plan.endpoint.host)) {
        throw new InfraError(`${plan.label} is not reachable at ${where} (${plan.variable}): start it, or point ${plan.variable} at a running server`);
      }
      log(`${plan.label} is not reachable at ${where}: starting it from installed binaries (data in ${options.dataDir})`);
      const server = await plan.start();
      started.push(server);
      log(`${plan.label} started on ${where}`);
    }),
  );
  const failures = results.filter((result): result is PromiseRejectedResult => result.status === "rejected").map((result) => result.reason as unknown);
  const stop = stopper(started);
  if (failures.length > 0) {
    await stop();
    // Still one line: each missing piece, separated by "; ".
    if (failures.length > 1 && failures.every((f) => f instanceof InfraError)) throw new InfraError(failures.map((f) => (f as Error).message).join("; "));
    throw failures[0];
  }
  try {
    if (await ensureDatabase(options.urls.databaseUrl)) log(`created database ${databaseName(options.urls.databaseUrl)}`);
  } catch (error) {
    await stop();
    throw error;
  }
  return { urls: options.urls, started: started.map((s) => s.name), stop };
}

function stopper(started: Started[]): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  const onExit = () => {
    for (const server of started) server.kill();
  };
  process.once("exit", onExit);
  return () => {
    stopping ??= (async () => {
      // Reverse order of start; what depends on what is not known here, so one at a time.
      for (const server of [...started].reverse()) await server.stop().catch(noop);
      process.removeListener("exit", onExit);
    })();
    return stopping;
  };
}

function endpointOf(url: string, defaultPort: number): Endpoint {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InfraError(`not a URL: ${JSON.stringify(url)}`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  return { host, port: parsed.port ? Number(parsed.port) : defaultPort };
}

async function waitReachable(endpoint: Endpoint, timeoutMs: number, exited: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reason = exited();
    if (reason !== undefined) throw new InfraError(reason);
    if (await isReachable(endpoint, 500)) return;
    if (Date.now() > deadline) throw new InfraError(`timed out after ${timeoutMs} ms waiting for ${endpoint.host}:${endpoint.port}`);
    await sleep(100);
  }
}

/**
 * Runs a short command to completion in its own session (a Ctrl-C in the
 * terminal must not cut initdb in half); throws with its output when it fails.
 */
function runTool(program: string, args: string[], options: { uid?: number; gid?: number; what: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { uid: options.uid, gid: options.gid, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new InfraError(`${options.what} failed: ${error.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(stdout);
      const output = `${stdout}\n${stderr}`.trim().split("\n").slice(-5).join(" | ");
      reject(new InfraError(`${options.what} failed (${signal ?? `exit ${code}`}): ${output}`));
    });
  });
}

// ---------------------------------------------------------------- postgres

interface Account {
  uid: number;
  gid: number;
  name: string;
}

/** Postgres refuses to run as root: as root, run it as the `postgres` (or `nobody`) account. */
function postgresAccount(): Account | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ["postgres", "nobody"]) {
    const uid = spawnSync("id", ["-u", name], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", name], { encoding: "utf8" });
    if (uid.status === 0 && gid.status === 0) return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  }
  throw new InfraError("Postgres refuses to run as root and there is no `postgres` or `nobody` account to run it as: create one (useradd postgres) or run as a normal user");
}

function canWrite(dir: string, account: Account | undefined): boolean {
  if (!account) return true;
  return spawnSync("test", ["-w", dir, "-a", "-x", dir], { uid: account.uid, gid: account.gid }).status === 0;
}

/**
 * Where a Postgres whose account cannot write under `dataDir` keeps its data instead (a
 * private folder made by mkdtemp is its creator's alone): one folder per `dataDir`.
 */
export function movedPostgresParent(dataDir: string): string {
  return join(tmpdir(), `orderflow-${createHash("sha256").update(dataDir).digest("hex").slice(0, 10)}`);
}

/** Postgres data folder: .data/postgres[-<port>], or a folder under /tmp when the service account cannot reach .data. */
function postgresDataDir(dataDir: string, port: number, account: Account | undefined): string {
  mkdirSync(dataDir, { recursive: true });
  const preferred = serverDataDir(dataDir, "postgres", port);
  if (!account) return preferred;
  mkdirSync(preferred, { recursive: true, mode: 0o700 });
  spawnSync("chown", ["-R", `${account.uid}:${account.gid}`, preferred]);
  if (canWrite(preferred, account)) return preferred;
  const fallback = join(movedPostgresParent(dataDir), basename(preferred));
  mkdirSync(fallback, { recursive: true, mode: 0o700 });
  spawnSync("chown", ["-R", `${account.uid}:${account.gid}`, dirname(fallback)]);
  return fallback;
}

async function startPostgres(endpoint: Endpoint, dataDir: string, timeoutMs: number, search?: string[]): Promise<Started> {
  const bin = findPostgresBin(search);
  if (!bin) {
    throw new InfraError(
      `Postgres is not reachable at ${endpoint.host}:${endpoint.port} and no postgres binaries were found: install PostgreSQL ≥ 14 (Debian: apt-get install postgresql)`,
    );
  }
  const account = postgresAccount();
  const dir = postgresDataDir(dataDir, endpoint.port, account);
  const ids = account ? { uid: account.uid, gid: account.gid } : {};
  if (!existsSync(join(dir, "PG_VERSION"))) {
    await runTool(join(bin, "initdb"), ["-D", dir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"], { ...ids, what: "initdb" });
  }
  const logFile = join(dir, "..", `postgres-${endpoint.port}.log`);
  closeSync(openSync(logFile, "a"));
  if (account) spawnSync("chown", [`${account.uid}:${account.gid}`, logFile]);
  const listen = endpoint.host === "localhost" ? "localhost" : endpoint.host === "::1" ? "::1" : "127.0.0.1";
  // Socket paths are limited to ~100 bytes; fall back to /tmp for deep folders.
  const socketDir = `${dir}/.s.PGSQL.${endpoint.port}`.length < 100 ? dir : tmpdir();
  const serverOptions = `-p ${endpoint.port} -c listen_addresses='${listen}' -k '${socketDir}' -c max_connections=300`;
  const pgCtl = join(bin, "pg_ctl");
  // Its own session: a Ctrl-C in the terminal must not reach Postgres before the services have stopped.
  const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(pgCtl, ["start", "-D", dir, "-l", logFile, "-w", "-t", String(Math.ceil(timeoutMs / 1000)), "-o", serverOptions], {
      ...ids,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("error", (error) => resolve({ code: -1, output: error.message }));
    child.once("exit", (code) => resolve({ code, output }));
  });
  if (result.code !== 0) {
    throw new InfraError(`pg_ctl start failed (exit ${result.code}): ${result.output.trim().split("\n").slice(-3).join(" | ")}; see ${logFile}`);
  }
  await waitReachable(endpoint, timeoutMs, () => undefined);
  const stopArgs = (mode: "fast" | "immediate") => ["stop", "-D", dir, "-m", mode, "-w", "-t", "30"];
  // pg_ctl started it in a session of its own: it would outlive a SIGKILL of this process.
  const cancelWatch = stopWithParent([pgCtl, ...stopArgs("fast")], ids);
  return {
    name: "postgres",
    ...(dir.startsWith(dataDir) ? {} : { movedDataDir: dirname(dir) }),
    stop: async () => {
      cancelWatch();
      await new Promise<void>((resolve) => {
        const child = spawn(pgCtl, stopArgs("fast"), { ...ids, stdio: "ignore" });
        child.once("error", () => resolve());
        child.once("exit", () => resolve());
      });
    },
    kill: () => {
      cancelWatch();
      spawnSync(pgCtl, stopArgs("immediate"), { ...ids, stdio: "ignore" });
    },
  };
}

// ---------------------------------------------------------------- redis and nats

/**
 * How a server that is our child runs: in a process group of its own or the caller's, and
 * optionally under another program (valgrind) with more environment.
 */
interface DaemonLaunch {
  ownGroup: boolean;
  commandPrefix?: readonly string[];
  env?: Readonly<Record<string, string>>;
}

/** Starts a server as our child, logging to a file. */
async function startDaemon(name: InfraName, program: string, serverArgs: string[], endpoint: Endpoint, logFile: string, timeoutMs: number, launch: DaemonLaunch): Promise<Started> {
  const { command, args } = runUnder(launch.commandPrefix ?? [], program, serverArgs);
  const fd = openSync(logFile, "a");
  const child: ChildProcess = spawn(command, args, { detached: launch.ownGroup, stdio: ["ignore", fd, fd], ...(launch.env ? { env: { ...process.env, ...launch.env } } : {}) });
  closeSync(fd);
  let exitReason: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exitReason = `${program} exited (${signal ?? `code ${code}`}) before accepting connections on ${endpoint.host}:${endpoint.port}; see ${logFile}`;
      resolve();
    });
    child.once("error", (error) => {
      exitReason = `${program} could not start: ${error.message}`;
      resolve();
    });
  });
  try {
    await waitReachable(endpoint, timeoutMs, () => exitReason);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  const running = () => child.exitCode === null && child.signalCode === null;
  // Our child, but not killed with us: a SIGKILL of this process would leave it running.
  const cancelWatch = stopWithParent(["kill", String(child.pid)]);
  // Once it has exited its pid may be reused: nothing to stop any more.
  child.once("exit", () => cancelWatch());
  return {
    name,
    ...(child.pid === undefined ? {} : { pid: child.pid }),
    stop: async () => {
      cancelWatch();
      if (!running()) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
    kill: () => {
      cancelWatch();
      if (running()) child.kill("SIGKILL");
    },
  };
}

async function startRedis(endpoint: Endpoint, dataDir: string, timeoutMs: number, search: string[] | undefined, launch: DaemonLaunch): Promise<Started> {
  const program = findBinary("redis-server", search);
  if (!program) {
    throw new InfraError(
      `Redis is not reachable at ${endpoint.host}:${endpoint.port} and no redis-server binary was found: install Redis ≥ 6 (Debian: apt-get install redis-server)`,
    );
  }
  const dir = serverDataDir(dataDir, "redis", endpoint.port);
  mkdirSync(dir, { recursive: true });
  const bind = endpoint.host === "localhost" ? "127.0.0.1" : endpoint.host;
  const args = ["--port", String(endpoint.port), "--bind", bind, "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"];
  return startDaemon("redis", program, args, endpoint, join(dataDir, `redis-${endpoint.port}.log`), timeoutMs, launch);
}

async function startNats(endpoint: Endpoint, dataDir: string, timeoutMs: number, search: string[] | undefined, launch: DaemonLaunch): Promise<Started> {
  const program = findBinary("nats-server", search);
  if (!program) {
    throw new InfraError(
      `NATS is not reachable at ${endpoint.host}:${endpoint.port} and no nats-server binary was found: install nats-server ≥ 2.9 (Debian: apt-get install nats-server)`,
    );
  }
  const dir = serverDataDir(dataDir, "nats", endpoint.port);
  mkdirSync(dir, { recursive: true });
  const bind = endpoint.host === "localhost" ? "127.0.0.1" : endpoint.host;
  const args = ["-js", "-sd", dir, "-a", bind, "-p", String(endpoint.port)];
  return startDaemon("nats", program, args, endpoint, join(dataDir, `nats-${endpoint.port}.log`), timeoutMs, launch);
}

/**
 * A private Redis, NATS or Postgres on a free port with throw-away data, for tests that
 * must not share queues or keys with a running `npm start`, or that restart the server.
 * Undefined when the binaries are not installed (callers then share the configured server).
 */
export interface PrivateServer {
  url: string;
  /** The server's process (Redis, NATS; not Postgres, which pg_ctl starts), as it is after any restart. */
  readonly pid: number | undefined;
  stop(): Promise<void>;
  /** Stops the server and starts it again on the same port with the same data (fault tests). */
  restart(downMs?: number): Promise<void>;
}

/** A private Redis or NATS run under another program (valgrind), with more environment and longer to start. */
export interface PrivateRunner {
  commandPrefix: readonly string[];
  env?: Readonly<Record<string, string>>;
  startTimeoutMs: number;
}

type PrivateStart = (endpoint: Endpoint, dir: string, runner?: PrivateRunner) => Promise<Started>;

/**
 * A private Redis or NATS: in the caller's process group, so that a Ctrl-C of the tests or
 * the bench stops it with them, and under the runner's program where one is given.
 */
function privateChild(start: typeof startRedis): PrivateStart {
  return (endpoint, dir, runner) => start(endpoint, dir, runner?.startTimeoutMs ?? 20_000, undefined, { ownGroup: false, ...(runner ? { commandPrefix: runner.commandPrefix } : {}), ...(runner?.env ? { env: runner.env } : {}) });
}

/** How to run each server privately: whether it is installed, how to start it, its URL. */
const privateServers: Record<InfraName, { installed: () => boolean; start: PrivateStart; url: (port: number) => string }> = {
  redis: { installed: () => findBinary("redis-server") !== undefined, start: privateChild(startRedis), url: (port) => `redis://127.0.0.1:${port}` },
  nats: { installed: () => findBinary("nats-server") !== undefined, start: privateChild(startNats), url: (port) => `nats://127.0.0.1:${port}` },
  postgres: {
    installed: () => findPostgresBin() !== undefined,
    start: (endpoint, dir, runner) => {
      // pg_ctl starts the server, and valgrind's control does not reach the backends it forks.
      if (runner) throw new Error("a private Postgres runs as pg_ctl starts it, under no other program");
      return startPostgres(endpoint, dir, 30_000);
    },
    url: (port) => `postgres://postgres@127.0.0.1:${port}/postgres`,
  },
};

export async function startPrivate(name: InfraName, dataDir: string, runner?: PrivateRunner): Promise<PrivateServer | undefined> {
  const server = privateServers[name];
  if (!server.installed()) return undefined;
  const port = await freePort();
  const endpoint = { host: "127.0.0.1", port };
  const dir = join(dataDir, `${name}-${port}`);
  mkdirSync(dir, { recursive: true });
  const launch = () => server.start(endpoint, dir, runner);
  let started = await launch();
  const onExit = () => started.kill();
  process.once("exit", onExit);
  return {
    url: server.url(port),
    get pid() {
      return started.pid;
    },
    stop: async () => {
      await started.stop();
      process.removeListener("exit", onExit);
      // Throw-away data is the caller's folder to remove, except what had to go elsewhere.
      if (started.movedDataDir) rmSync(started.movedDataDir, { recursive: true, force: true });
    },
    restart: async (downMs = 1_000) => {
      await started.stop();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      started = await launch();
    },
  };
}
