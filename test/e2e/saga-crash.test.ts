/**
 * Participants (payment, inventory) and the orchestrator (order) killed with
 * SIGKILL while ~100 orders are in flight, started again a second later, and
 * NATS, Redis and Postgres restarted and every Postgres connection dropped under load: every order still
 * reaches exactly one terminal state, no service process dies of it,
 * and the audit holds — right away, and again once the messages the dead
 * process held (redelivered after the consumers' 10 s ack wait) have come back.
 */
import pg from "pg";
import { beforeAll, describe, expect, test } from "vitest";
import { auditSaga, auditUntilClean, formatAudit, snapshotStock, type StockBaseline } from "../support/saga-audit.js";
import { eventually, stopAndReportOnFailure, ordersInFlight, prng, retryUnavailable, type SagaSystem, sleep, startSagaSystem, topUp, waitAllSettled, waitBusQuiet } from "../support/saga-system.js";

let sys: SagaSystem;
let baseline: StockBaseline;
const topUps = new Map<string, bigint>();
const random = prng(20261123);
const skus = ["KB-001", "MS-002", "MN-003", "HS-004", "CB-005", "DK-006", "WC-007", "LS-008"];

beforeAll(async () => {
  sys = await startSagaSystem({
    name: "crash",
    // Short step deadline: a command held by the killed process is re-sent (new message id)
    // a second later instead of waiting for the consumers' 10 s ack wait.
    serviceEnv: { order: { SAGA_STEP_TIMEOUT_MS: "1000", SAGA_STEP_MAX_ATTEMPTS: "6" } },
    // Restarted below, with NATS and Redis.
    privatePostgres: true,
  });
  baseline = await snapshotStock(sys.db);
}, 120_000);

stopAndReportOnFailure(() => sys);

/**
 * Tries of each CreateOrder refused as unavailable, as a client with an idempotency key keeps
 * trying while the order service is down: 16, about 30 s of waits, outlast the order service's
 * kill, the second before its restart and its start on a machine whose cores other test files
 * keep busy (the default 8, about 9 s, once did not in CI).
 */
const createAttempts = 16;

/** 20 customers with varied funds (some run out), 5 orders each, paced over ~1 s. */
async function placeOrders(round: string, onProgress?: (created: number) => void): Promise<string[]> {
  const customers = Array.from({ length: 20 }, (_, i) => `${round}-c${i}`);
  await Promise.all(
    customers.map(async (c, i) => {
      const amount = [3_000n, 30_000n, 300_000n][i % 3] ?? 0n;
      await topUp(sys, c, amount);
      topUps.set(c, amount);
    }),
  );
  const ids: string[] = [];
  const creates: Promise<void>[] = [];
  for (let n = 0; n < 100; n++) {
    const customerId = customers[n % customers.length] ?? "";
    const first = skus[Math.floor(random() * skus.length)] ?? "CB-005";
    const second = skus[Math.floor(random() * skus.length)] ?? "CB-005";
    const items = first === second ? [{ sku: first, quantity: 1n }] : [{ sku: first, quantity: 1n }, { sku: second, quantity: BigInt(1 + Math.floor(random() * 2)) }];
    creates.push(
      retryUnavailable(() => sys.order.createOrder({ customerId, items, idempotencyKey: `${round}-${n}` }), undefined, createAttempts).then(({ order }) => {
        if (order) ids.push(order.orderId);
        onProgress?.(ids.length);
      }),
    );
    await sleep(10);
  }
  await Promise.all(creates);
  return ids;
}

/**
 * WatchNotifications streams of the round's customers (as placeOrders names them), open
 * until `signal` aborts; returns the order ids they were told of.
 */
function watchNotifications(round: string, signal: AbortSignal): { heard: Set<string>; ended: Promise<unknown> } {
  const heard = new Set<string>();
  const streams = Array.from({ length: 20 }, async (_, i) => {
    try {
      for await (const { notification } of sys.notification.watchNotifications({ customerId: `${round}-c${i}` }, { signal, timeoutMs: 0 })) {
        if (notification) heard.add(notification.orderId);
      }
    } catch (error) {
      if (!signal.aborted) throw error;
    }
  });
  return { heard, ended: Promise.all(streams) };
}

/**
 * Terminates every Postgres connection of the services (not the test's own) every 25 ms for
 * `forMs` (new ones too, as they connect), as a restart or a failover would drop them; returns
 * how many it terminated.
 */
async function dropServiceConnections(forMs: number): Promise<number> {
  const killer = new pg.Client({ connectionString: sys.databaseUrl, application_name: "e2e-crash-killer" });
  await killer.connect();
  let dropped = 0;
  try {
    for (const until = Date.now() + forMs; Date.now() < until; await sleep(25)) {
      const { rows } = await killer.query<{ n: number }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name NOT LIKE 'e2e-%'`,
      );
      dropped += rows[0]?.n ?? 0;
    }
  } finally {
    await killer.end();
  }
  return dropped;
}

function outcomes(statuses: Map<string, string>): string {
  const counts: Record<string, number> = {};
  for (const s of statuses.values()) counts[s] = (counts[s] ?? 0) + 1;
  return JSON.stringify(counts);
}

/** The step each held participant answers: an order awaiting it cannot conclude while the participant is frozen. */
const stepOf: Record<string, string> = { payment: "charge", inventory: "reserve" };

/**
 * Runs `work` with participant `held` frozen (SIGSTOP) once an order waits on it, and thaws it
 * after. On a fast hour a saga concludes within the 10 ms between two orders, so a kill could
 * otherwise find none in flight (the orchestrator's did, once in CI). The order waited for was
 * created after the freeze, so its command reached `held` frozen and no reply to it can be on
 * its way: it is mid-flight at the kill however fast the machine runs the others. (An order
 * merely in flight at the freeze could conclude on a reply already sent, and did, once, in
 * the instant between the check and the kill.)
 */
async function withFrozen<T>(held: string, work: () => Promise<T>): Promise<T> {
  const pid = sys.system.info(held).pid;
  const step = stepOf[held];
  if (pid === undefined || step === undefined) throw new Error(`${held} is not a running participant`);
  process.kill(pid, "SIGSTOP");
  try {
    const { rows } = await sys.db.query<{ at: Date }>("SELECT clock_timestamp() AS at");
    const frozenAt = rows[0]?.at;
    const waiting = async () =>
      (await sys.db.query<{ n: number }>("SELECT count(*)::int AS n FROM orders.orders WHERE created_at > $1 AND $2 = ANY (awaiting)", [frozenAt, step])).rows[0]?.n ?? 0;
    await eventually(async () => (await waiting()) > 0, 5_000, `an order created since ${held} was frozen, waiting on its ${step}`, 5);
    return await work();
  } finally {
    process.kill(pid, "SIGCONT");
  }
}

/**
 * Kills `service` (SIGKILL) the moment the 40th order is created, while another participant
 * holds a saga up (withFrozen), counts the orders then in flight, and starts the service again
 * a second later while the rest are still placed (CreateOrders refused meanwhile are retried
 * with their idempotency keys).
 */
function killWhilePlacing(service: string): { onProgress: (created: number) => void; inFlightAtKill: () => Promise<number>; downMs: () => number } {
  let crash: Promise<number> | undefined;
  let downMs = 0;
  const held = service === "payment" ? "inventory" : "payment";
  return {
    onProgress: (created) => {
      if (created !== 40 || crash) return;
      crash = (async () => {
        let killedAt = 0;
        const inFlight = await withFrozen(held, async () => {
          await sys.system.kill(service);
          killedAt = Date.now();
          return ordersInFlight(sys);
        });
        await sleep(1_000);
        await sys.system.restart(service);
        downMs = Date.now() - killedAt;
        return inFlight;
      })();
    },
    inFlightAtKill: () => crash ?? Promise.reject(new Error(`${service} was never killed: fewer than 40 orders created`)),
    downMs: () => downMs,
  };
}

describe("participants killed mid-flight", () => {
  for (const service of ["payment", "inventory", "order"] as const) {
    const role = service === "order" ? "order (the orchestrator)" : service;
    test(`${role} killed (SIGKILL) with orders in flight, restarted after 1 s`, async () => {
      const started = Date.now();
      const crash = killWhilePlacing(service);
      const ids = await placeOrders(service.slice(0, 3), crash.onProgress);
      const inFlightAtKill = await crash.inFlightAtKill();
      const statuses = await waitAllSettled(sys, ids, 60_000);
      console.log(`${service} kill: ${ids.length} orders, ${inFlightAtKill} in flight at the kill, serving again ${(crash.downMs() / 1000).toFixed(1)} s after it, all terminal after ${((Date.now() - started) / 1000).toFixed(1)} s: ${outcomes(statuses)}`);
      expect(ids).toHaveLength(100);
      expect(inFlightAtKill).toBeGreaterThan(0);
      // Stock commits a killed inventory had taken are unanswered: they come back after the 10 s ack wait.
      const auditStarted = Date.now();
      const report = await auditUntilClean(sys.db, { baseline, topUps }, service === "inventory" ? 30_000 : 15_000);
      console.log(`${service} kill: audit clean ${((Date.now() - auditStarted) / 1000).toFixed(1)} s after the last order settled`);
      expect(report.violations).toEqual([]);
    }, 120_000);
  }

  for (const server of ["nats", "redis", "postgres"] as const) {
    test(`${server} restarted (down 1 s) with orders in flight; watch streams open across it hear of every outcome`, async () => {
      const watching = new AbortController();
      const watch = watchNotifications(server, watching.signal);
      await sleep(500); // the streams' subscriptions reach NATS
      const started = Date.now();
      let restarted: Promise<void> | undefined;
      const ids = await placeOrders(server, (created) => {
        if (created === 40 && !restarted) restarted = sys.test.servers[server]?.restart(1_000);
      });
      await restarted;
      const statuses = await waitAllSettled(sys, ids, 90_000);
      console.log(`${server} restart: ${ids.length} orders, all terminal after ${((Date.now() - started) / 1000).toFixed(1)} s: ${outcomes(statuses)}`);
      expect(sys.test.servers[server]).toBeDefined();
      expect(sys.system.services.filter((s) => !s.running).map((s) => s.name)).toEqual([]);
      expect(ids).toHaveLength(100);
      const report = await auditUntilClean(sys.db, { baseline, topUps }, 15_000);
      expect(report.violations).toEqual([]);
      // Every order concluded, so each has a notification: the streams heard of each one.
      await eventually(async () => ids.every((id) => watch.heard.has(id)), 15_000, "a notification for every order").catch(() => undefined);
      expect(ids.filter((id) => !watch.heard.has(id))).toEqual([]);
      watching.abort();
      await watch.ended;
    }, 150_000);
  }

  test("Postgres drops every connection of the services for 1 s with orders in flight; no service exits, every order concludes", async () => {
    const started = Date.now();
    let outage: Promise<number> | undefined;
    const ids = await placeOrders("pg", (created) => {
      if (created === 40 && !outage) outage = dropServiceConnections(1_000);
    });
    const dropped = await outage;
    const statuses = await waitAllSettled(sys, ids, 90_000);
    console.log(`postgres connections dropped: ${dropped} over 1 s; ${ids.length} orders, all terminal after ${((Date.now() - started) / 1000).toFixed(1)} s: ${outcomes(statuses)}`);
    expect(dropped).toBeGreaterThan(0);
    expect(sys.system.services.filter((s) => !s.running).map((s) => s.name)).toEqual([]);
    expect(ids).toHaveLength(100);
    const report = await auditUntilClean(sys.db, { baseline, topUps }, 15_000);
    expect(report.violations).toEqual([]);
  }, 150_000);

  test("audit after the killed processes' messages were redelivered and every outbox drained", async () => {
    await waitBusQuiet(sys, 60_000);
    // Participants answered every step: a crash must not turn into a step timeout (a re-sent
    // command whose answer is lost would leave the order waiting until it is given up).
    const timedOut = await sys.db.query("SELECT order_id, status_reason FROM orders.orders WHERE status_reason LIKE '%timed out%'");
    expect(timedOut.rows).toEqual([]);
    const report = await auditSaga(sys.db, { baseline, topUps });
    console.log(formatAudit("crash scenarios (700 orders; payment, inventory and order SIGKILLed; NATS, Redis and Postgres restarted; Postgres connections dropped)", report));
    expect(report.violations).toEqual([]);
    expect(report.orders).toBe(700);
  }, 90_000);
});
