// `npm run bench:instructions`: the instructions each service executes per confirmed saga,
// and per cached GetOrder beside a bare @grpc/grpc-js server's call, counted by callgrind.
// CPU time per saga on this machine doubles between the host's quiet and busy hours; an
// instruction count stays within a few per cent, so a change's cost can be read on any hour.
//
// Every server runs under valgrind, some fifty times slower: the load is a low, steady rate,
// and each count is taken over a window opened (callgrind_control -z) after a warm-up and
// closed (-d) when the window's work is done, less what the process does idle over as long.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { repoRoot } from "../tools/system.js";
import { callgrindPrefix, InstructionCounter, valgrindVersion } from "./callgrind.js";
import { type Costs, noCosts } from "./callgrind-costs.js";
import { concludedOrderIds } from "./database.js";
import { startEchoServer } from "./echo-process.js";
import { LoadGenerator } from "./generator-process.js";
import { type CostsPerUnit, costsPerUnit, sumCosts } from "./instructions-figures.js";
import { instructionsUsage, parseInstructionOptions } from "./instructions-options.js";
import { log, sleep } from "./log.js";
import { machineFacts } from "./machine.js";
import { parseOptions } from "./options.js";
import type { UnaryJob } from "./protocol.js";
import { runBenchMain } from "./run-main.js";
import { seed } from "./seed.js";
import { round, sum } from "./stats.js";
import { bringUp } from "./system-under-test.js";
import { healthServiceName } from "./transports.js";

/** Under valgrind a service takes a minute or more to load its modules and connect. */
const startTimeoutMs = 600_000;
/** How long the services are left after the warm-up before their idle work is counted. */
const settleMs = 15_000;
/**
 * Deadlines meant for native speed, stretched for valgrind's: a cold service under it takes
 * seconds to answer, and a lookup or a saga step past its deadline is failed or sent again,
 * work that is no saga's normal path.
 */
const slowedDeadlines = { order: { INVENTORY_TIMEOUT_MS: "120000", SAGA_STEP_TIMEOUT_MS: "120000" } };

/** The servers the bench starts privately, counted beside the services: NATS and Redis (Postgres is shared, and pg_ctl's forked backends are beyond callgrind_control). */
const servers = ["nats", "redis"] as const;
/** callgrind fails an assertion on the signals Go's scheduler preempts goroutines with, so nats-server runs without them. */
const serverEnv: Record<(typeof servers)[number], Record<string, string>> = { nats: { GODEBUG: "asyncpreemptoff=1" }, redis: {} };
/**
 * V8's heap as load leaves it, not as 10/s would:
 * - the young generation at its bound (the services' --max-semi-space-size) from the start, as
 *   it is within seconds at 1,700/s. At 10/s V8 grows it from 1 MiB at its own pace, and its
 *   size decides how many scavenges a window holds (112 and 56 in the order service's saga
 *   window of two runs).
 * - no memory reducer: at a low allocation rate it starts full collections to shrink the heap
 *   (one in every service's window, with the young generation fixed), which load never lets
 *   it do.
 * The bare grpc-js server the calls are read against runs with them too.
 */
const nodeFlags = ["--min-semi-space-size=64", "--no-memory-reducer"];

runBenchMain(async (cleanups) => {
  const root = repoRoot();
  const options = parseInstructionOptions(process.argv.slice(2), root);
  if (options.help) {
    process.stdout.write(instructionsUsage);
    return;
  }
  const valgrind = await valgrindVersion();
  const machine = machineFacts();
  const dumps = options.dumpsDir ?? mkdtempSync(join(tmpdir(), "orderflow-callgrind-"));
  if (options.dumpsDir) mkdirSync(dumps, { recursive: true });
  else cleanups.push(async () => rmSync(dumps, { recursive: true, force: true }));
  const smoke = parseOptions(["--smoke"], root);
  const benchOptions = { ...smoke, customers: 200, products: 100, logLevel: "warn" as const, serviceEnv: { ...smoke.serviceEnv, ...slowedDeadlines } };
  log(`starting the services under ${valgrind} (callgrind); each takes a minute or more…`);
  const endpoints = await bringUp(benchOptions, cleanups, {
    commandPrefix: callgrindPrefix(join(dumps, "service")),
    nodeFlags,
    readyTimeoutMs: startTimeoutMs,
    infra: (name) => ({ commandPrefix: callgrindPrefix(join(dumps, name)), env: serverEnv[name], startTimeoutMs }),
  });
  const counters = new Map<string, InstructionCounter>();
  for (const [name, pid] of endpoints.pids) {
    if (pid === undefined) throw new Error(`no pid for ${name}: its instructions cannot be counted`);
    counters.set(name, new InstructionCounter(pid, join(dumps, "service")));
  }
  for (const name of servers) {
    const pid = endpoints.infraPids.get(name);
    if (pid === undefined) log(`no private ${name} server (its binary is not installed): its instructions are not counted`);
    else counters.set(name, new InstructionCounter(pid, join(dumps, name)));
  }
  const isServer = (name: string): boolean => (servers as readonly string[]).includes(name);
  const zeroAll = () => Promise.all([...counters.values()].map((counter) => counter.zero()));
  const dumpAll = async (): Promise<Map<string, Costs>> => new Map(await Promise.all([...counters].map(async ([name, counter]) => [name, await counter.dump()] as const)));

  const generator = new LoadGenerator();
  cleanups.push(() => generator.stop());
  const runId = Date.now().toString(36);
  const seeded = await seed(benchOptions, endpoints, runId);
  const order = endpoints.address("order");
  await generator.run({ kind: "init", orderAddress: order, orderUrl: `http://${order}`, natsUrl: endpoints.natsUrl, databaseUrl: endpoints.databaseUrl, customers: seeded.customers, skus: seeded.skus, runId });

  const sagaStep = (index: number, sagas: number) =>
    generator.run({ kind: "saga-step", index, ratePerSec: options.ratePerSec, durationMs: Math.ceil((sagas / options.ratePerSec) * 1_000), drainTimeoutMs: startTimeoutMs, maxInFlight: 10_000, warmupMs: 0 });
  log(`warm-up: ${options.warmupSagas} sagas at ${options.ratePerSec}/s, not counted…`);
  const warm = await sagaStep(0, options.warmupSagas);
  const warmFailures = sum(Object.values(warm.createErrors));
  log(`  ${warm.confirmed} confirmed${warmFailures > 0 ? `; ${warmFailures} CreateOrders failed while the services were cold (${Object.keys(warm.createErrors).join(", ")})` : ""}`);

  // Left alone first: the warm-up's last garbage collections and compilations are not idle work.
  log(`idle: ${settleMs / 1000} s to settle, then ${options.idleMs / 1000} s counted with no load…`);
  await sleep(settleMs);
  await zeroAll();
  let opened = performance.now();
  await sleep(options.idleMs);
  const idleCounts = await dumpAll();
  const idleMs = performance.now() - opened;
  const idleOf = (name: string): Costs => idleCounts.get(name) ?? noCosts;

  log(`counted: ${options.sagas} sagas at ${options.ratePerSec}/s…`);
  await zeroAll();
  opened = performance.now();
  const counted = await sagaStep(1, options.sagas);
  const sagaCounts = await dumpAll();
  const sagaWindowMs = performance.now() - opened;
  const failedCreates = sum(Object.values(counted.createErrors));
  if (counted.confirmed === 0) throw new Error(`no saga of the counted window was confirmed (${counted.rejected} rejected, ${counted.unfinished} unfinished)`);
  const perProcess = [...sagaCounts].map(([name, costs]) => [name, costsPerUnit(costs, sagaWindowMs, idleOf(name), idleMs, counted.confirmed)] as const);
  const perSaga = Object.fromEntries(perProcess.filter(([name]) => !isServer(name)));
  const perSagaByServer = Object.fromEntries(perProcess.filter(([name]) => isServer(name)));
  const sagaTotal = sumCosts(Object.values(perSaga));
  const withServers = sumCosts([sagaTotal, ...Object.values(perSagaByServer)]);

  // Unary calls: an uncounted run first (V8 compiles the call's path), then the counted one.
  const unary = (name: string, address: string, workload: UnaryJob["workload"]): UnaryJob => ({ kind: "unary", name, protocol: "grpc", address, url: `http://${address}`, concurrency: 16, durationMs: options.callsMs, warmupMs: 0, workload });
  const countCalls = async (counter: InstructionCounter, job: UnaryJob, idle: Costs) => {
    await generator.run(job);
    await counter.zero();
    const started = performance.now();
    const result = await generator.run(job);
    const costs = await counter.dump();
    const calls = result.requests - sum(Object.values(result.errors));
    return { calls, perCall: costsPerUnit(costs, performance.now() - started, idle, idleMs, calls), markCompacts: costs.markCompacts };
  };
  const ids = await concludedOrderIds(endpoints.databaseUrl, `bench-${runId}-`, 100);
  const orderCounter = counters.get("order");
  if (!orderCounter || ids.length === 0) throw new Error("no confirmed orders to read back");
  log(`GetOrder (cached, ${ids.length} ids over and over): ${options.callsMs / 1000} s uncounted, then ${options.callsMs / 1000} s counted…`);
  const getOrder = await countCalls(orderCounter, unary("GetOrder warm", order, { call: "getOrder", ids, once: false }), idleOf("order"));

  log("bare grpc-js server (Health/Check) under callgrind…");
  const echo = await startEchoServer("grpc-js", { commandPrefix: callgrindPrefix(join(dumps, "echo")), nodeFlags, startTimeoutMs });
  let bare: { calls: number; perCall: CostsPerUnit; markCompacts: number };
  try {
    if (echo.pid === undefined) throw new Error("no pid for the bare grpc-js server");
    const echoCounter = new InstructionCounter(echo.pid, join(dumps, "echo"));
    bare = await countCalls(echoCounter, unary("Health/Check bare grpc-js", `127.0.0.1:${echo.grpcPort}`, { call: "health", service: healthServiceName }), noCosts);
  } finally {
    await echo.stop();
  }

  const inBareCalls = (instructions: number): number => round(instructions / bare.perCall.all, 1);
  const result = {
    schema: "orderflow-bench-instructions/3",
    startedAt: machine.date,
    finishedAt: new Date().toISOString(),
    machine: { ...machine, valgrind },
    config: options,
    saga: { warmupSagas: warm.confirmed, confirmed: counted.confirmed, rejected: counted.rejected, failedCreates: counted.createErrors, unfinished: counted.unfinished, windowMs: Math.round(sagaWindowMs), perSagaByService: perSaga, perSaga: sagaTotal, inBareCalls: inBareCalls(sagaTotal.all), perSagaByServer, perSagaWithServers: withServers, markCompactsByService: Object.fromEntries(Object.keys(perSaga).map((name) => [name, sagaCounts.get(name)?.markCompacts ?? 0])) },
    idleByProcess: Object.fromEntries([...idleCounts].map(([name, costs]) => [name, { ...costs, windowMs: Math.round(idleMs) }])),
    getOrder: { ...getOrder, inBareCalls: inBareCalls(getOrder.perCall.all) },
    bareGrpcJs: bare,
  };
  mkdirSync(options.outDir, { recursive: true });
  const file = join(options.outDir, `${machine.date.slice(0, 10)}-${machine.gitCommit}-instructions.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  const count = (value: number): string => value.toLocaleString("en-US").padStart(12);
  const row = (name: string, costs: CostsPerUnit, markCompacts: number | undefined, after = ""): string =>
    `  ${name.padEnd(26)}${count(costs.program)}${count(costs.gc)}${count(costs.compiler)}${count(costs.all)}${(markCompacts === undefined ? "" : String(markCompacts)).padStart(10)}${after}`;
  const columns = `  ${"".padEnd(26)}${"program".padStart(12)}${"V8 GC".padStart(12)}${"V8 compile".padStart(12)}${"all".padStart(12)}${"full GCs".padStart(10)}`;
  const { markCompactsByService } = result.saga;
  process.stdout.write(
    [
      "",
      `instructions per confirmed saga (${counted.confirmed} sagas at ${options.ratePerSec}/s after ${warm.confirmed} uncounted; idle taken out)`,
      ...(failedCreates + counted.rejected + counted.unfinished > 0 ? [`  (the window also held ${failedCreates} failed CreateOrders, ${counted.rejected} rejected and ${counted.unfinished} unfinished sagas: its figures include their work)`] : []),
      columns,
      ...Object.entries(perSaga).map(([name, costs]) => row(name, costs, markCompactsByService[name])),
      row("all services", sagaTotal, sum(Object.values(markCompactsByService)), `  = ${result.saga.inBareCalls} bare grpc-js calls`),
      ...Object.entries(perSagaByServer).map(([name, costs]) => row(`${name}-server`, costs, undefined)),
      ...(Object.keys(perSagaByServer).length > 0 ? [row(`services, ${Object.keys(perSagaByServer).join(" and ")}`, withServers, undefined)] : []),
      "",
      `instructions per call (${options.callsMs / 1000} s counted after as long uncounted, 16 in flight)`,
      columns,
      row("GetOrder, cached", getOrder.perCall, getOrder.markCompacts, `  = ${result.getOrder.inBareCalls} bare grpc-js calls (${getOrder.calls} calls)`),
      row("bare grpc-js Health/Check", bare.perCall, bare.markCompacts, `  (${bare.calls} calls)`),
      "",
      "full GCs: V8's mark-compacts begun in the window; whether one falls in it moves V8 GC most",
      "program: what neither V8's garbage collector nor its compilers ran (JavaScript, V8's builtins and runtime, Node, libuv); all of nats-server's and redis-server's",
      "",
    ].join("\n"),
  );
  log(`results: ${file}${options.dumpsDir ? `; callgrind's dumps in ${dumps}` : ""}`);
});
