// `npm run bench`: saga throughput and query latency of OrderFlow on this
// machine, beside the raw ceilings (bare grpc-js, JetStream, Postgres) measured
// in the same run. See bench/README.md for how to run it and read it.
//
// This process orchestrates; the load comes from bench/loadgen.ts in a child
// process of its own (generator-process.ts), the bare servers from
// bench/echo-server.ts, and the services run as `npm start` runs them
// (system-under-test.ts).
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as connectNats } from "@nats-io/transport-node";
import { repoRoot } from "../tools/system.js";
import { AutovacuumStandIn } from "./autovacuum.js";
import { autovacuumIsOn, serviceConnectionPids, waitForQuiet } from "./database.js";
import { LoadGenerator } from "./generator-process.js";
import { goalLatencyRatePerSec, goalsOf } from "./goals.js";
import { seedHistory } from "./history.js";
import { log, sleep } from "./log.js";
import { machineFacts, mappedAllocator, nodeFlagsOf } from "./machine.js";
import { parseOptions, usage } from "./options.js";
import { busGraceSeconds } from "./protocol.js";
import { runQueries } from "./queries.js";
import { ratiosOf } from "./ratios.js";
import { renderSvg, renderTable } from "./report.js";
import { connectionsFootprint, ResourceMonitor } from "./resources.js";
import { type BenchResult, checkResult, resultSchema } from "./results.js";
import { runBenchMain } from "./run-main.js";
import { readStages, runSagaSteps } from "./saga-steps.js";
import { seed } from "./seed.js";
import { round } from "./stats.js";
import { bringUp, effectiveServiceEnv } from "./system-under-test.js";
import { TransportRuns } from "./transports.js";

runBenchMain(async (cleanups) => {
  const options = parseOptions(process.argv.slice(2), repoRoot());
  if (options.help) {
    process.stdout.write(usage);
    return;
  }
  const startedAt = new Date().toISOString();
  const machine = machineFacts();
  const runId = Date.now().toString(36);
  const notes: string[] = [];
  const goalStep = options.goalStepMs === undefined ? "" : ` (${goalLatencyRatePerSec}/s for ${options.goalStepMs / 1000}s)`;
  log(`${options.mode} run: steps of ${options.stepMs / 1000}s${goalStep} at ${options.rates.join(", ")}/s; query runs of ${options.runMs / 1000}s at concurrency ${options.concurrency}`);
  const endpoints = await bringUp(options, cleanups);
  machine.servicesAllocator = Object.fromEntries([...endpoints.pids].map(([name, pid]) => [name, mappedAllocator(pid)]));
  machine.servicesNodeFlags = Object.fromEntries([...endpoints.pids].map(([name, pid]) => [name, nodeFlagsOf(pid)]));
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
  const jetStreamJob = { kind: "ceiling-jetstream", natsUrl: endpoints.natsUrl, messages: options.jetStreamMessages, window: 256, payloadBytes: 128 } as const;
  // A fifth of the run first, not counted: the generator's first pass through nats.js runs unoptimised code.
  await generator.run({ ...jetStreamJob, messages: Math.ceil(jetStreamJob.messages / 5) });
  const jetstream = await generator.run(jetStreamJob);
  // Only on the database the bench created: a targeted system's database is not ours to vacuum.
  const autovacuum = Object.keys(options.targets).length === 0 && !(await autovacuumIsOn(endpoints.databaseUrl)) ? new AutovacuumStandIn(endpoints.databaseUrl) : undefined;
  if (autovacuum) {
    cleanups.push(() => autovacuum.close());
    notes.push(`autovacuum is off on this Postgres: the bench stood in for it — VACUUM (ANALYZE) before each saga step and before the query runs, and during the steps ANALYZE of each table autovacuum's threshold picked (checked once every autovacuum_naptime, ${(await autovacuum.naptimeMs()) / 1000} s, as autovacuum visits a database, on one clock across the steps)`);
  }
  const transports = new TransportRuns(options, generator, endpoints, notes);
  const grpcJs = await transports.bareGrpcJs();
  const transport = await transports.compare();

  const nats = await connectNats({ servers: endpoints.natsUrl, name: "orderflow-bench-queues" });
  cleanups.push(() => nats.close());
  const sagaRun = { options, generator, databaseUrl: endpoints.databaseUrl, monitor, autovacuum, nats, jsm: await jetstreamManager(nats), notes };
  const saga = await runSagaSteps(sagaRun);
  const { steps } = saga;
  const maxCompletedPerSec = Math.max(0, ...steps.map((s) => s.completedPerSec));
  const sustainedPerSec = Math.max(0, ...steps.filter((s) => !s.saturated).map((s) => s.offeredPerSec));

  // Queries, on the orders the saga steps left, once the system has finished them.
  const customerPrefix = `bench-${runId}-`;
  const quietTimeoutMs = options.mode === "smoke" ? 10_000 : 60_000;
  log("waiting for the orders still in flight to conclude…");
  const stillOpen = await waitForQuiet(endpoints.databaseUrl, customerPrefix, quietTimeoutMs);
  if (stillOpen > 0) notes.push(`${stillOpen} orders were still in flight ${quietTimeoutMs / 1000}s after the last saga step: the query runs shared the machine with them`);
  await readStages(sagaRun, customerPrefix, saga);
  await autovacuum?.vacuum();
  const queries = await runQueries(options, generator, endpoints, transports, customerPrefix, notes);
  const resources = monitor.stop().map((footprint) => {
    const memoryCgroup = endpoints.memoryCgroup(footprint.name);
    return memoryCgroup ? { ...footprint, memoryCgroup } : footprint;
  });
  for (const { name, memoryCgroup } of resources) {
    if (memoryCgroup && memoryCgroup.oomKills > 0) notes.push(`${name}: the kernel killed ${memoryCgroup.oomKills} of its processes for memory at its pod's limit of ${memoryCgroup.limitMb} MiB (--pod-memory)`);
  }
  const postgresConnections = connectionsFootprint(await serviceConnectionPids(endpoints.databaseUrl));

  const transportH2load = transports.h2load;
  const ratios = ratiosOf({ queries, transport, grpcJs, postgres, jetstream, transportH2load, maxCompletedPerSec });
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
  if (machine.autogroupScheduling && Object.keys(options.targets).length > 0) {
    notes.push("this kernel schedules each session as one group: services started in sessions of their own (npm start gives each one) share the cores differently from the bench's own start, which keeps them in its session — here that layout confirmed 15–25 % more sagas/s at saturation (bench/README.md)");
  }
  if (options.mode === "smoke") notes.push("smoke run: a few seconds of tiny load, for checking that the bench works — not figures to quote");
  if (endpoints.pids.size > 0 && [...endpoints.pids.values()].some((pid) => pid === undefined)) notes.push("some service pids were not found: their memory is unknown");

  const sagaSummary: BenchResult["saga"] = { steps, maxCompletedPerSec, sustainedPerSec, saturated: steps.some((s) => s.saturated) };
  const result: BenchResult = {
    schema: resultSchema,
    mode: options.mode,
    startedAt,
    finishedAt: new Date().toISOString(),
    machine,
    config: {
      stepMs: options.stepMs,
      ...(options.goalStepMs !== undefined && { goalStepMs: options.goalStepMs }),
      runMs: options.runMs,
      rates: options.rates,
      concurrency: options.concurrency,
      customers: options.customers,
      products: options.products,
      target: Object.keys(options.targets).length > 0 ? options.targets : null,
      logLevel: options.logLevel,
      serviceEnv: Object.keys(options.targets).length > 0 ? {} : effectiveServiceEnv(options),
      podMemory: options.podMemory,
      generator: "Node child process: gRPC over node:http2 (bench/grpc-wire.ts), connect-node client over HTTP/1.1 JSON (Connect)",
    },
    seed: { customers: seeded.customers.length, products: seeded.skus.length, ms: seeded.ms, ...history },
    saga: sagaSummary,
    queries,
    transport,
    ceilings: { grpcJs, postgres, jetstream },
    transportH2load,
    tools: { h2load: transports.h2loadBinary ?? null },
    ratios,
    goals: goalsOf({ saga: sagaSummary, ratios }),
    resources,
    postgresConnections,
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
});
