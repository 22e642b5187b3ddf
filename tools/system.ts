// Runs OrderFlow's services as processes on one machine: used by `npm start`,
// the end-to-end tests and the benchmark. Each service is its own
// `node dist/services/<name>/main.js` process; start() returns once every one
// answers grpc.health.v1 Health/Check with SERVING.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { asError } from "../services/platform/errors.js";
import type { InfraUrls } from "./infra.js";
import { type Allocator, servicesAllocator } from "./allocator.js";
import { MemoryCgroup, type MemoryCgroupUsage, removeLeftoverCgroups } from "./memory-cgroup.js";
import { freePort } from "./ports.js";
import { serviceNodeFlags } from "./node-flags.js";
import { CrashLoop, type RestartPolicy } from "./restart-policy.js";
import { runUnder } from "./run-under.js";

/** Addresses of the other services, for a service's environment. */
export type ServiceUrls = (service: string) => string;

export interface ServiceDefinition {
  name: string;
  /** gRPC / gRPC-Web / Connect port (PORT). */
  port: number;
  /** Prometheus port (METRICS_PORT). */
  metricsPort: number;
  /** Service-specific environment; `url(name)` is another service's base URL. */
  env?: (url: ServiceUrls) => Record<string, string>;
}

/**
 * Every service of the system. Adding one is one line here; a service is only
 * started when dist/services/<name>/main.js exists. The ports lie below the
 * ephemeral range (Linux 32768–60999, elsewhere 49152+): there, any process's
 * outgoing connection can hold a port as its local end, or leave it in TIME_WAIT
 * for a minute, and the service would fail to bind it with EADDRINUSE.
 */
export const serviceTable: readonly ServiceDefinition[] = [
  { name: "order", port: 8080, metricsPort: 9461, env: (url) => ({ INVENTORY_URL: url("inventory") }) },
  { name: "inventory", port: 8081, metricsPort: 9462, env: () => ({ SEED_DEMO_DATA: "true" }) },
  { name: "fraud", port: 8082, metricsPort: 9463 },
  { name: "payment", port: 8083, metricsPort: 9464, env: () => ({ SEED_DEMO_DATA: "true" }) },
  { name: "notification", port: 8084, metricsPort: 9465 },
];

/** The largest PORT_OFFSET `npm start` accepts: it keeps every port below the ephemeral range. */
export const maxPortOffset = 10_000;

/** The project's own Node (24, node_modules/.bin/node) when installed, whatever runs this; else this one. */
export function projectNode(root = repoRoot()): string {
  const installed = join(root, "node_modules", ".bin", "node");
  return existsSync(installed) ? installed : process.execPath;
}

/** The repository root (this file is tools/system.ts or dist/tools/system.js). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export function serviceEntry(root: string, name: string): string {
  return join(root, "dist", "services", name, "main.js");
}

/** Names of the services in the table that have been built. */
export function builtServices(root = repoRoot()): string[] {
  return serviceTable.filter((s) => existsSync(serviceEntry(root, s.name))).map((s) => s.name);
}

export type LogStream = "stdout" | "stderr";
/** Receives each line a service prints (its JSON log lines). */
export type LogSink = (service: string, line: string, stream: LogStream) => void;

export interface SystemOptions {
  infra: InfraUrls;
  /** Which services to run (default: every built one). */
  services?: string[];
  /** "default" = the table's ports; "free" = free ports picked now (tests). */
  ports?: "default" | "free";
  /** Per-service port overrides. */
  portOverrides?: Record<string, { port?: number; metricsPort?: number }>;
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** Extra environment for one service. */
  serviceEnv?: Record<string, Record<string, string>>;
  logLevel?: "error" | "warn" | "info" | "debug";
  /** Where service output goes (default: prefixed to this process's stdout). */
  output?: LogSink;
  /** Inherit this process's environment (default true; tests pass false for a clean one). */
  inheritEnv?: boolean;
  /**
   * Run each service in its own process group, so a terminal's Ctrl-C reaches
   * only the parent, which then stops services in order (npm start). Tests keep
   * services in their group so they die with the test run.
   */
  detached?: boolean;
  /** How long each service may take to become SERVING. */
  readyTimeoutMs?: number;
  /** How long a SIGTERMed service may take before SIGKILL. */
  stopTimeoutMs?: number;
  root?: string;
  /**
   * Start a service again when it exits without being asked to, once the system is up
   * (default: leave it stopped — tests kill and restart services themselves).
   */
  restart?: RestartPolicy;
  /** Called when a service exits without being asked to; `restartInMs` when it will be started again. */
  onUnexpectedExit?: (service: string, code: number | null, signal: NodeJS.Signals | null, restartInMs: number | undefined) => void;
  /** Called when a restarted service is SERVING again, or with why it is not. */
  onRestarted?: (service: string, error: Error | undefined) => void;
  /**
   * Run these services (and their replicas) each in a memory cgroup of this many MiB, as under a
   * pod's memory limit (tools/memory-cgroup.ts: root on Linux). The start fails when one cannot be made.
   */
  memoryLimitsMb?: Record<string, number>;
  /** A program each service runs under, with its arguments: `["valgrind", "--tool=callgrind"]` runs `valgrind --tool=callgrind node …`. */
  commandPrefix?: string[];
  /** More flags for each service's node, after the ones every service starts with (serviceNodeFlags). */
  nodeFlags?: readonly string[];
}

export interface ServiceInfo {
  name: string;
  host: string;
  port: number;
  metricsPort: number;
  /** Base URL for gRPC / Connect clients, e.g. http://127.0.0.1:8081 */
  url: string;
  metricsUrl: string;
  pid: number | undefined;
  running: boolean;
  /** How the last process exited: its exit code, or the signal that ended it. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

interface ServiceState {
  definition: ServiceDefinition;
  port: number;
  metricsPort: number;
  env: NodeJS.ProcessEnv;
  child?: ChildProcess;
  exited?: Promise<void>;
  expectingExit: boolean;
  startedAt?: number;
  crashLoop?: CrashLoop;
  pendingRestart?: NodeJS.Timeout;
  /** The memory cgroup its processes run in (memoryLimitsMb). */
  cgroup?: MemoryCgroup;
}

const host = "127.0.0.1";
/** A service's memory cgroup is `orderflow-<service>-<pid of the System's process>`. */
const memoryCgroupPrefix = "orderflow-";

/** The recent output of every service, for printing when a test fails. */
export class LogBuffer {
  private readonly lines: string[] = [];
  constructor(private readonly limit = 5_000) {}
  readonly sink: LogSink = (service, line) => {
    this.lines.push(`${service} | ${line}`);
    if (this.lines.length > this.limit) this.lines.splice(0, this.lines.length - this.limit);
  };
  get size(): number {
    return this.lines.length;
  }
  /** Lines since a mark taken with `size` (all when omitted). */
  since(mark = 0): string[] {
    return this.lines.slice(mark);
  }
  tail(count: number): string[] {
    return this.lines.slice(-count);
  }
}

const colors = [36, 33, 35, 32, 34, 91, 96];

/** Prefixes each line with the service name (coloured on a terminal), like docker compose. */
export function prefixedOutput(stream: NodeJS.WriteStream = process.stdout): LogSink {
  const useColor = stream.isTTY === true && !process.env["NO_COLOR"];
  const width = Math.max(...serviceTable.map((s) => s.name.length));
  return (service, line) => {
    const index = serviceTable.findIndex((s) => s.name === service);
    const label = service.padEnd(width);
    const prefix = useColor ? `\x1b[${colors[index % colors.length] ?? 36}m${label} |\x1b[0m` : `${label} |`;
    stream.write(`${prefix} ${line}\n`);
  };
}

export class System {
  private readonly states = new Map<string, ServiceState>();
  private readonly root: string;
  private readonly output: LogSink;
  private readonly node: string;
  /** Crashed services are restarted only between a finished up() and stop(). */
  private upFinished = false;
  private stopped = false;
  private allocator: Allocator | undefined;

  constructor(private readonly options: SystemOptions) {
    this.root = options.root ?? repoRoot();
    this.output = options.output ?? prefixedOutput();
    this.node = projectNode(this.root);
  }

  /** Starts the services and waits until each is SERVING; stops them all if one fails. */
  static start(options: SystemOptions): Promise<System> {
    return new System(options).up();
  }

  /** start() for a System created first (so a signal handler can stop it while it starts). */
  async up(): Promise<this> {
    if (this.states.size > 0) throw new Error("this system was already started");
    await this.plan();
    try {
      await Promise.all(this.names.map((name) => this.startService(name)));
      // One that was up and exited while others were still starting fails the start as a whole.
      const gone = this.services.filter((service) => !service.running);
      if (gone.length > 0) throw new Error(`${gone.map((service) => `${service.name} ${describeExit(service.exit)}`).join(", ")} while the others were starting`);
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.upFinished = true;
    return this;
  }

  private async plan(): Promise<void> {
    const built = builtServices(this.root);
    const wanted = this.options.services ?? built;
    const missing = wanted.filter((name) => !built.includes(name));
    if (missing.length > 0) {
      const unknown = missing.filter((name) => !serviceTable.some((s) => s.name === name));
      if (unknown.length > 0) throw new Error(`unknown service(s): ${unknown.join(", ")} (known: ${serviceTable.map((s) => s.name).join(", ")})`);
      throw new Error(`service(s) not built: ${missing.join(", ")} (no ${serviceEntry(this.root, missing[0] ?? "")}; run npm run build)`);
    }
    if (wanted.length === 0) throw new Error(`no service is built under ${join(this.root, "dist", "services")}: run npm run build`);
    const ports = new Map<string, { port: number; metricsPort: number }>();
    for (const definition of serviceTable) {
      const override = this.options.portOverrides?.[definition.name] ?? {};
      const free = this.options.ports === "free";
      ports.set(definition.name, {
        port: override.port ?? (free ? await freePort() : definition.port),
        metricsPort: override.metricsPort ?? (free ? await freePort() : definition.metricsPort),
      });
    }
    const url: ServiceUrls = (name) => {
      const found = ports.get(name);
      if (!found) throw new Error(`unknown service ${name}`);
      return `http://${host}:${found.port}`;
    };
    const base: NodeJS.ProcessEnv = this.options.inheritEnv === false ? cleanEnv() : { ...process.env };
    this.allocator = servicesAllocator(base);
    for (const definition of serviceTable) {
      if (!wanted.includes(definition.name)) continue;
      const { port, metricsPort } = ports.get(definition.name) ?? { port: definition.port, metricsPort: definition.metricsPort };
      const env: NodeJS.ProcessEnv = {
        ...base,
        ...this.allocator.env,
        DATABASE_URL: this.options.infra.databaseUrl,
        REDIS_URL: this.options.infra.redisUrl,
        NATS_URL: this.options.infra.natsUrl,
        PORT: String(port),
        METRICS_PORT: String(metricsPort),
        LOG_LEVEL: this.options.logLevel ?? "info",
        // The service stops by itself when this process dies without stopping it (services/platform/host.ts).
        ORDERFLOW_PARENT_PID: String(process.pid),
        OTEL_SERVICE_NAME: `orderflow-${definition.name}`,
        ...definition.env?.(url),
        ...this.options.env,
        ...this.options.serviceEnv?.[definition.name],
      };
      this.states.set(definition.name, { definition, port, metricsPort, env, expectingExit: false });
    }
    // Also without limits of its own: a killed run's empty cgroups go at the next start of any kind.
    removeLeftoverCgroups(memoryCgroupPrefix);
    try {
      for (const [name, state] of this.states) state.cgroup = this.memoryCgroupFor(name, state.definition);
    } catch (error) {
      this.removeMemoryCgroups();
      throw error;
    }
  }

  /** A memory cgroup for a service or replica (`name`) of a service with a limit in memoryLimitsMb. */
  private memoryCgroupFor(name: string, definition: ServiceDefinition): MemoryCgroup | undefined {
    const limitMb = this.options.memoryLimitsMb?.[definition.name];
    return limitMb === undefined ? undefined : MemoryCgroup.create(`${memoryCgroupPrefix}${name.replace("#", "-")}-${process.pid}`, limitMb * 2 ** 20);
  }

  private removeMemoryCgroups(): void {
    for (const state of this.states.values()) state.cgroup?.remove();
  }

  /** What the memory cgroup of a service (memoryLimitsMb) was charged; undefined when it runs in none. */
  memoryCgroupUsage(name: string): MemoryCgroupUsage | undefined {
    return this.state(name).cgroup?.usage();
  }

  private state(name: string): ServiceState {
    const state = this.states.get(name);
    if (!state) throw new Error(`service ${name} is not part of this system (running: ${[...this.states.keys()].join(", ")})`);
    return state;
  }

  /** Which memory allocator the services run on (tools/allocator.ts), once planned. */
  get memoryAllocator(): string {
    return this.allocator?.description ?? "not planned yet";
  }

  /** Names of the services in this system. */
  get names(): string[] {
    return [...this.states.keys()];
  }

  info(name: string): ServiceInfo {
    const state = this.state(name);
    return {
      name,
      host,
      port: state.port,
      metricsPort: state.metricsPort,
      url: `http://${host}:${state.port}`,
      metricsUrl: `http://${host}:${state.metricsPort}/metrics`,
      pid: state.child?.pid,
      running: isRunning(state.child),
      exit: exitOf(state.child),
    };
  }

  /** Base URL of a service, e.g. http://127.0.0.1:8081 */
  url(name: string): string {
    return this.info(name).url;
  }

  /** host:port of a service, for grpc-js and grpcurl. */
  address(name: string): string {
    const { port } = this.state(name);
    return `${host}:${port}`;
  }

  get services(): ServiceInfo[] {
    return this.names.map((name) => this.info(name));
  }

  private async startService(name: string): Promise<void> {
    const state = this.state(name);
    if (isRunning(state.child)) throw new Error(`${name} is already running`);
    const node = runUnder(this.options.commandPrefix ?? [], this.node, [...serviceNodeFlags, ...(this.options.nodeFlags ?? []), serviceEntry(this.root, state.definition.name)]);
    const { command, args } = state.cgroup?.wrap(node.command, node.args) ?? node;
    const child = spawn(command, args, {
      cwd: this.root,
      env: state.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: this.options.detached ?? false,
    });
    state.child = child;
    state.expectingExit = false;
    state.startedAt = Date.now();
    for (const stream of ["stdout", "stderr"] as const) {
      createInterface({ input: child[stream], crlfDelay: Infinity }).on("line", (line) => this.output(name, line, stream));
    }
    let exitInfo: string | undefined;
    state.exited = new Promise<void>((resolveExit) => {
      const ended = (info: string, code: number | null, signal: NodeJS.Signals | null): void => {
        if (exitInfo !== undefined) return;
        exitInfo = info;
        if (!state.expectingExit) {
          const restartInMs = this.scheduleRestart(name, state);
          this.options.onUnexpectedExit?.(name, code, signal, restartInMs);
        }
        resolveExit();
      };
      // Without a pid the process never ran, and Node may send no "exit" after the error.
      child.on("error", (error) => {
        if (child.pid === undefined) ended(`could not start: ${error.message}`, null, null);
      });
      child.once("exit", (code, signal) => ended(describeExit({ code, signal }), code, signal));
    });
    await this.waitServing(name, () => exitInfo);
  }

  /** Starts a crashed service again after its crash loop's wait; returns the wait, or undefined when not supervising. */
  private scheduleRestart(name: string, state: ServiceState): number | undefined {
    const policy = this.options.restart;
    if (policy === undefined || !this.upFinished || this.stopped) return undefined;
    state.crashLoop ??= new CrashLoop(policy);
    const delayMs = state.crashLoop.crashed(Date.now() - (state.startedAt ?? Date.now()));
    state.pendingRestart = setTimeout(() => {
      state.pendingRestart = undefined;
      const starting = this.startService(name);
      const child = state.child;
      starting.then(
        () => this.options.onRestarted?.(name, undefined),
        // One that exited has been reported by its exit, with its next restart set; one
        // stopped and replaced meanwhile (restart()) is not what failed.
        (error: unknown) => {
          if (state.child === child && isRunning(child)) this.options.onRestarted?.(name, asError(error));
        },
      );
    }, delayMs);
    return delayMs;
  }

  /** Polls Health/Check until SERVING; fails when the process exits or the time is up. */
  private async waitServing(name: string, exited: () => string | undefined): Promise<void> {
    const state = this.state(name);
    const timeoutMs = this.options.readyTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    const transport = createGrpcTransport({ baseUrl: `http://${host}:${state.port}` });
    const health = createClient(Health, transport);
    let last = "no answer yet";
    for (;;) {
      const reason = exited();
      if (reason !== undefined) throw new Error(`${name} ${reason} before it was ready (port ${state.port})`);
      try {
        const response = await health.check({ service: "" }, { timeoutMs: 1_000 });
        if (response.status === ServingStatus.SERVING) return;
        last = `status ${ServingStatus[response.status]}`;
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      }
      if (Date.now() > deadline) throw new Error(`${name} was not SERVING on port ${state.port} after ${timeoutMs} ms (${last})`);
      await sleep(150);
    }
  }

  /** Waits until a running service answers SERVING again (e.g. after its dependencies recover). */
  async waitHealthy(name: string): Promise<void> {
    const state = this.state(name);
    await this.waitServing(name, () => (isRunning(state.child) ? undefined : "is not running"));
  }

  /** SIGTERM, then SIGKILL after the stop timeout; resolves when the process is gone. */
  async stopService(name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const state = this.state(name);
    clearTimeout(state.pendingRestart);
    state.pendingRestart = undefined;
    const child = state.child;
    if (!child || !isRunning(child)) return;
    state.expectingExit = true;
    child.kill(signal);
    const timer = setTimeout(() => {
      if (isRunning(child)) child.kill("SIGKILL");
    }, this.options.stopTimeoutMs ?? 15_000);
    await state.exited;
    clearTimeout(timer);
  }

  /** kill -9: the process dies at once, mid-whatever (crash tests). */
  kill(name: string): Promise<void> {
    return this.stopService(name, "SIGKILL");
  }

  /**
   * Starts one more process of a service, as another replica: the same environment on ports
   * of its own. Returns its name (`order#2`...), which `url`, `info` and `stopService` take.
   */
  async addReplica(name: string): Promise<string> {
    const { definition, env } = this.state(name);
    const replica = `${name}#${this.names.filter((n) => n === name || n.startsWith(`${name}#`)).length + 1}`;
    const port = await freePort();
    const metricsPort = await freePort();
    const cgroup = this.memoryCgroupFor(replica, definition);
    this.states.set(replica, { definition, port, metricsPort, env: { ...env, PORT: String(port), METRICS_PORT: String(metricsPort) }, expectingExit: false, cgroup });
    await this.startService(replica);
    return replica;
  }

  /** Starts a stopped or killed service again on the same ports and waits until SERVING. */
  async restart(name: string): Promise<void> {
    await this.stopService(name);
    await this.startService(name);
  }

  /** Stops every service (in parallel); safe to call more than once. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.names.map((name) => this.stopService(name)));
    this.removeMemoryCgroups();
  }

  /** Last-resort synchronous kill of everything still running (process exit handlers). */
  killAllNow(): void {
    this.stopped = true;
    for (const state of this.states.values()) {
      clearTimeout(state.pendingRestart);
      if (isRunning(state.child)) {
        state.expectingExit = true;
        state.child?.kill("SIGKILL");
      }
    }
  }
}

/** "exited with code 1", "killed by SIGKILL". */
export function describeExit(exit: ServiceInfo["exit"]): string {
  if (exit === undefined) return "is running";
  if (exit.code === null && exit.signal === null) return "could not start";
  return exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

function exitOf(child: ChildProcess | undefined): ServiceInfo["exit"] {
  if (child === undefined || (child.exitCode === null && child.signalCode === null)) return undefined;
  return { code: child.exitCode, signal: child.signalCode };
}

function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null && child.pid !== undefined;
}

/** This process's environment without test-runner and Node option variables. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("VITEST") || key === "NODE_OPTIONS" || key === "TEST" || key.startsWith("npm_")) continue;
    env[key] = value;
  }
  return env;
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}
