// `npm start`: Postgres, Redis and NATS (used where running, started where not),
// every built service as its own process, then a summary with ready-to-paste
// commands. A service that crashes is started again (tools/restart-policy.ts).
// Ctrl-C (SIGINT) or SIGTERM stops the services, then what was started here.
import { join } from "node:path";
import { whenParentDies } from "../services/platform/parent.js";
import { ensureInfra, infraUrlsFromEnv, type RunningInfra } from "./infra.js";
import { InfraError } from "./infra-error.js";
import { isReachable } from "./ports.js";
import { npmStartRestarts } from "./restart-policy.js";
import { builtServices, describeExit, maxPortOffset, prefixedOutput, repoRoot, serviceTable, System } from "./system.js";

const root = repoRoot();
const useColor = process.stdout.isTTY === true && !process.env["NO_COLOR"];
const bold = (text: string) => (useColor ? `\x1b[1m${text}\x1b[0m` : text);
const dim = (text: string) => (useColor ? `\x1b[2m${text}\x1b[0m` : text);
const note = (message: string) => process.stdout.write(`${dim("orderflow |")} ${message}\n`);

let infra: RunningInfra | undefined;
let infraStarting: Promise<RunningInfra> | undefined;
let system: System | undefined;
let stopping: Promise<void> | undefined;

function shutdown(reason: string, code: number): Promise<void> {
  stopping ??= (async () => {
    note(`${reason}: stopping services…`);
    await system?.stop();
    // Servers still starting are stopped once they are up.
    infra ??= await infraStarting?.catch(() => undefined);
    if (infra && infra.started.length > 0) note(`stopping ${infra.started.join(", ")}…`);
    await infra?.stop();
    note("stopped");
    process.exit(code);
  })();
  return stopping;
}

// A signal during start-up waits for the step under way, then stops what exists.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void shutdown(signal, 0));
process.on("exit", () => system?.killAllNow());
// Whoever started us (npm, the bootstrap) is gone: stop as on SIGTERM rather than run on unseen.
whenParentDies(process.ppid, () => void shutdown("parent process exited", 0), 500);

function logLevel(): "error" | "warn" | "info" | "debug" {
  const level = process.env["LOG_LEVEL"];
  return level === "error" || level === "warn" || level === "debug" ? level : "info";
}

/** PORT_OFFSET shifts every service port, to run a second copy beside the first. */
function portOverrides(): Record<string, { port: number; metricsPort: number }> {
  const raw = process.env["PORT_OFFSET"] ?? "0";
  const offset = Number(raw);
  if (!Number.isInteger(offset) || offset < 0 || offset > maxPortOffset) throw new InfraError(`PORT_OFFSET must be a whole number from 0 to ${maxPortOffset} (got ${JSON.stringify(raw)})`);
  return Object.fromEntries(serviceTable.map((s) => [s.name, { port: s.port + offset, metricsPort: s.metricsPort + offset }]));
}

async function checkPortsFree(ports: Record<string, { port: number; metricsPort: number }>): Promise<void> {
  for (const name of builtServices(root)) {
    const wanted = ports[name];
    if (!wanted) continue;
    for (const port of [wanted.port, wanted.metricsPort]) {
      if (await isReachable({ host: "127.0.0.1", port }, 500)) {
        throw new InfraError(`port ${port} (${name}) is already in use — is another \`npm start\` running? Stop it, or shift every port with PORT_OFFSET=100 npm start`);
      }
    }
  }
}

async function main(): Promise<void> {
  const ports = portOverrides();
  await checkPortsFree(ports);
  const urls = infraUrlsFromEnv();
  infraStarting = ensureInfra({ urls, dataDir: join(root, ".data"), log: note });
  infra = await infraStarting;
  if (stopping) return;
  note("starting services (each applies its migrations at start)…");
  system = new System({
    infra: urls,
    portOverrides: ports,
    logLevel: logLevel(),
    detached: true,
    output: prefixedOutput(),
    restart: npmStartRestarts,
    onUnexpectedExit: (service, code, signal, restartInMs) => {
      if (stopping) return;
      const how = `${service} stopped unexpectedly (${describeExit({ code, signal })})`;
      if (restartInMs !== undefined) return note(`${how}; starting it again in ${restartInMs / 1000} s`);
      // Before every service was up: the start fails as a whole.
      note(how);
    },
    onRestarted: (service, error) => {
      if (stopping) return;
      note(error ? `${service} was started again but is not serving: ${error.message}` : `${service} is serving again`);
    },
  });
  await system.up();
  if (stopping) return;
  printSummary(system, infra);
}

function printSummary(running: System, runningInfra: RunningInfra): void {
  const names = running.names;
  const width = Math.max(...names.map((n) => n.length), "service".length);
  const lines: string[] = ["", bold("OrderFlow is running"), ""];
  lines.push(`  ${"service".padEnd(width)}  ${"gRPC / gRPC-Web / Connect".padEnd(26)}  metrics`);
  for (const info of running.services) lines.push(`  ${info.name.padEnd(width)}  ${info.url.padEnd(26)}  ${info.metricsUrl}`);
  const started = new Set(runningInfra.started);
  const mark = (name: "postgres" | "redis" | "nats") => (started.has(name) ? "started here, data in .data/" : "already running");
  lines.push("", `  postgres ${redact(runningInfra.urls.databaseUrl)} (${mark("postgres")})`);
  lines.push(`  redis    ${runningInfra.urls.redisUrl} (${mark("redis")})`);
  lines.push(`  nats     ${runningInfra.urls.natsUrl} (${mark("nats")})`);
  lines.push(`  memory   ${running.memoryAllocator}`);

  lines.push("", bold("Try it"), "");
  if (names.includes("inventory")) {
    const inventory = running.info("inventory");
    lines.push(dim("  # list products with buf curl (schema from server reflection, gRPC protocol)"));
    lines.push(`  npx buf curl --protocol grpc --http2-prior-knowledge ${inventory.url}/orderflow.inventory.v1.InventoryService/ListProducts -d '{"pageSize":3}'`);
    lines.push(dim("  # the same with grpcurl"));
    lines.push(`  grpcurl -plaintext -d '{"pageSize":3}' ${running.address("inventory")} orderflow.inventory.v1.InventoryService/ListProducts`);
  }
  if (names.includes("order")) {
    const order = running.info("order");
    lines.push(dim("  # services and methods via reflection"));
    lines.push(`  grpcurl -plaintext ${running.address("order")} list`);
    if (names.includes("payment")) {
      lines.push(dim("  # alice, bob and carol start with USD 1,000.00 in their wallets"));
      lines.push(`  npx buf curl --protocol grpc --http2-prior-knowledge ${running.info("payment").url}/orderflow.payment.v1.PaymentService/GetWallet -d '{"customerId":"alice"}'`);
    }
    lines.push(dim("  # place an order"));
    lines.push(
      `  npx buf curl --protocol grpc --http2-prior-knowledge ${order.url}/orderflow.order.v1.OrderService/CreateOrder -d '{"customerId":"alice","items":[{"sku":"KB-001","quantity":1}],"idempotencyKey":"demo-1"}'`,
    );
    lines.push(dim("  # watch it travel to CONFIRMED (streams the order as it changes); put the id from CreateOrder in orderId"));
    lines.push(`  npx buf curl --protocol grpc --http2-prior-knowledge ${order.url}/orderflow.order.v1.OrderService/WatchOrder -d '{"orderId":"<id>"}'`);
    lines.push(dim("  # read it back over plain HTTP/1.1 + JSON (Connect protocol)"));
    lines.push(`  curl -s -H 'content-type: application/json' -d '{"orderId":"<id>"}' ${order.url}/orderflow.order.v1.OrderService/GetOrder`);
  } else if (names.includes("inventory")) {
    lines.push(dim("  # plain HTTP/1.1 + JSON (Connect protocol)"));
    lines.push(`  curl -s -H 'content-type: application/json' -d '{"sku":"KB-001"}' ${running.url("inventory")}/orderflow.inventory.v1.InventoryService/GetProduct`);
  }
  const first = running.services[0];
  if (first) {
    lines.push(dim("  # health, as Kubernetes probes ask it"));
    lines.push(`  npx buf curl --protocol grpc --http2-prior-knowledge ${first.url}/grpc.health.v1.Health/Check`);
    lines.push(dim("  # metrics"));
    lines.push(`  curl -s ${first.metricsUrl} | head`);
  }
  lines.push("", dim("  Ctrl-C stops everything."), "");
  process.stdout.write(`${lines.join("\n")}\n`);
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}

main().catch(async (error: unknown) => {
  if (stopping) return void (await stopping);
  const message = error instanceof InfraError ? error.message : error instanceof Error ? error.message : String(error);
  process.stderr.write(`npm start: ${message}\n`);
  stopping ??= (async () => {
    await system?.stop();
    await (infra ?? (await infraStarting?.catch(() => undefined)))?.stop();
  })();
  await stopping;
  process.exit(1);
});
