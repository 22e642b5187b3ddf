/**
 * The whole OrderFlow system for one saga end-to-end test file, on top of the
 * shared harness (test/support/system.ts): every built service as its own
 * process, in a database of its own, on a NATS server and a Redis of its own.
 *
 * Private NATS is required here, not optional: the JetStream stream names
 * (ORDER, INVENTORY, INVENTORY_COMMANDS, …, DLQ) and the durable consumer names
 * (payment-commands, order-payment-events, …) are fixed, so two systems on one
 * NATS would consume each other's commands. Redis is private too (fraud
 * velocity counters and the CreateOrder rate limit are per customer).
 */
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { surviveDroppedConnections } from "../../services/platform/db.js";
import { sagaStreams } from "../../services/platform/saga-routes.js";
import { FraudService } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { InventoryService } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { NotificationService } from "../../gen/orderflow/notification/v1/notification_pb.js";
import { OrderService, OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { PaymentService } from "../../gen/orderflow/payment/v1/payment_pb.js";
import type { LogBuffer, System } from "../../tools/system.js";
import { sharedInfra, startTestSystem, type TestSystem } from "./system.js";
import { afterAll, beforeEach } from "vitest";

/**
 * Per test file: prints the services' output of each failed test and stops the
 * system after the last test. `current` returns the system once beforeAll made it.
 */
export function stopAndReportOnFailure(current: () => SagaSystem | undefined): void {
  beforeEach((context) => {
    const sys = current();
    const mark = sys?.logs.size ?? 0;
    context.onTestFailed(() => sys?.test.printLogs(`"${context.task.name}" failed`, mark));
  });
  afterAll(async () => {
    await current()?.stop();
  }, 60_000);
}

export const terminalStatusNames = ["CONFIRMED", "REJECTED", "CANCELLED"] as const;
export const isTerminalStatus = (s: OrderStatus): boolean => s === OrderStatus.CONFIRMED || s === OrderStatus.REJECTED || s === OrderStatus.CANCELLED;

export interface SagaSystemOptions {
  /** Short name for logs, e.g. "happy". */
  name: string;
  /** Environment for every service. */
  env?: Record<string, string>;
  /** Environment per service, e.g. { order: { SAGA_STEP_TIMEOUT_MS: "1000" } }. */
  serviceEnv?: Record<string, Record<string, string>>;
  /** Every service's log level (default warn). */
  logLevel?: "error" | "warn" | "info" | "debug";
  /** A Postgres of this system's own, which tests may restart (`test.servers.postgres`). */
  privatePostgres?: boolean;
}

export interface SagaSystem {
  test: TestSystem;
  system: System;
  logs: LogBuffer;
  /** Postgres pool on this system's database (schemas orders, inventory, payment, notification). */
  db: pg.Pool;
  databaseUrl: string;
  natsUrl: string;
  redisUrl: string;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  order: Client<typeof OrderService>;
  inventory: Client<typeof InventoryService>;
  payment: Client<typeof PaymentService>;
  fraud: Client<typeof FraudService>;
  notification: Client<typeof NotificationService>;
  stop(): Promise<void>;
}

/** The services a saga needs. */
export const sagaServices = ["order", "inventory", "fraud", "payment", "notification"];

export async function startSagaSystem(options: SagaSystemOptions): Promise<SagaSystem> {
  const shared = sharedInfra();
  // No demo wallets (alice, bob, carol): every wallet and top-up is the test's own, for the audit.
  const serviceEnv = { ...options.serviceEnv, payment: { SEED_DEMO_DATA: "false", ...options.serviceEnv?.["payment"] } };
  const t = await startTestSystem({ services: sagaServices, env: options.env, serviceEnv, logLevel: options.logLevel ?? "warn", privatePostgres: options.privatePostgres ?? false });
  const cleanups: Array<() => Promise<void>> = [() => t.stop()];
  const cleanup = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
  };
  try {
    if (t.infra.natsUrl === shared.natsUrl || t.infra.redisUrl === shared.redisUrl) {
      throw new Error("saga e2e tests need nats-server (≥ 2.9) and redis-server installed: each test file runs its own, as stream and consumer names are fixed");
    }
    // Postgres is restarted under it in the crash tests.
    const db = surviveDroppedConnections(new pg.Pool({ connectionString: t.infra.databaseUrl, max: 8, application_name: `e2e-${options.name}` }));
    cleanups.push(() => db.end());
    const nc = await connect({ servers: t.infra.natsUrl, name: `e2e-${options.name}` });
    cleanups.push(() => nc.close());
    const transport = (name: string) => createGrpcTransport({ baseUrl: t.url(name) });
    return {
      test: t,
      system: t.system,
      logs: t.logs,
      db,
      databaseUrl: t.infra.databaseUrl,
      natsUrl: t.infra.natsUrl,
      redisUrl: t.infra.redisUrl,
      nc,
      js: jetstream(nc),
      jsm: await jetstreamManager(nc),
      order: createClient(OrderService, transport("order")),
      inventory: createClient(InventoryService, transport("inventory")),
      payment: createClient(PaymentService, transport("payment")),
      fraud: createClient(FraudService, transport("fraud")),
      notification: createClient(NotificationService, transport("notification")),
      stop: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until check() returns a value that is not undefined/false, or throws after timeoutMs. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs: number, what: string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

/** Tops up a wallet (creating it) by amountMinor USD cents. */
export async function topUp(sys: SagaSystem, customerId: string, amountMinor: bigint, key = `seed-${customerId}`): Promise<void> {
  await retryUnavailable(() => sys.payment.topUpWallet({ customerId, amount: { amountMinor, currency: "USD" }, idempotencyKey: key }));
}

/**
 * A top-up function that also records each amount in `ledger` (customer → total
 * given), the figures the audit checks wallets against. `current` returns the
 * system once beforeAll has made it.
 */
export function fundInto(current: () => SagaSystem, ledger: Map<string, bigint>): (customerId: string, amountMinor: bigint) => Promise<void> {
  return async (customerId, amountMinor) => {
    await topUp(current(), customerId, amountMinor);
    ledger.set(customerId, (ledger.get(customerId) ?? 0n) + amountMinor);
  };
}

/** Status names of the given orders, straight from Postgres. */
export async function orderStatuses(sys: SagaSystem, orderIds: readonly string[]): Promise<Map<string, string>> {
  const { rows } = await sys.db.query<{ order_id: string; status: string }>("SELECT order_id::text, status FROM orders.orders WHERE order_id = ANY($1::uuid[])", [orderIds]);
  return new Map(rows.map((r) => [r.order_id, r.status]));
}

/** Waits until every given order is terminal (polling Postgres); returns the final status names. */
export async function waitAllTerminal(sys: SagaSystem, orderIds: readonly string[], timeoutMs: number): Promise<Map<string, string>> {
  const terminal = new Set<string>(terminalStatusNames);
  return eventually(
    async () => {
      const statuses = await orderStatuses(sys, orderIds);
      return statuses.size === orderIds.length && [...statuses.values()].every((s) => terminal.has(s)) ? statuses : undefined;
    },
    timeoutMs,
    `${orderIds.length} orders to reach a terminal status`,
    200,
  );
}

/** Waits until one order is terminal; returns its status name. */
export async function waitTerminal(sys: SagaSystem, orderId: string, timeoutMs = 20_000): Promise<string> {
  const statuses = await waitAllTerminal(sys, [orderId], timeoutMs);
  return statuses.get(orderId) ?? "";
}

/** Product stock as stored. */
export async function stockOf(sys: SagaSystem, sku: string): Promise<{ available: bigint; reserved: bigint; sold: bigint }> {
  const { rows } = await sys.db.query<{ available: string; reserved: string; sold: string }>("SELECT available, reserved, sold FROM inventory.products WHERE sku = $1", [sku]);
  const row = rows[0];
  if (!row) throw new Error(`no product ${sku}`);
  return { available: BigInt(row.available), reserved: BigInt(row.reserved), sold: BigInt(row.sold) };
}

/** Adds a product for a test (in this system's own database). */
export async function addProduct(sys: SagaSystem, sku: string, priceMinor: bigint, available: bigint): Promise<void> {
  await sys.db.query("INSERT INTO inventory.products (sku, name, price_minor, currency, available) VALUES ($1, $2, $3, 'USD', $4)", [sku, `test product ${sku}`, priceMinor.toString(), available.toString()]);
}

/**
 * Waits until the bus is quiet: every durable consumer has nothing pending or
 * unacknowledged and every order outbox row is published. A message delivered to a
 * killed process comes back only after its ack wait (30 s), so audits after a
 * crash wait for this to prove late redeliveries change nothing.
 */
export async function waitBusQuiet(sys: SagaSystem, timeoutMs: number): Promise<void> {
  await eventually(
    async () => {
      for (const stream of sagaStreams) {
        for await (const c of sys.jsm.consumers.list(stream)) {
          if (c.num_pending > 0 || c.num_ack_pending > 0) return false;
        }
      }
      const { rows } = await sys.db.query<{ n: string }>("SELECT count(*) AS n FROM orders.outbox WHERE published_at IS NULL");
      return Number(rows[0]?.n ?? 0) === 0;
    },
    timeoutMs,
    "the bus to be quiet (no pending or unacknowledged messages, the order outbox published)",
    250,
  );
}

/**
 * Waits until every given order is terminal and its saga settled (no step
 * awaited: a CONFIRMED order's stock commit is done, a compensation finished).
 */
export async function waitAllSettled(sys: SagaSystem, orderIds: readonly string[], timeoutMs: number): Promise<Map<string, string>> {
  return eventually(
    async () => {
      const { rows } = await sys.db.query<{ order_id: string; status: string; settled: boolean }>(
        "SELECT order_id::text, status, cardinality(awaiting) = 0 AS settled FROM orders.orders WHERE order_id = ANY($1::uuid[])",
        [orderIds],
      );
      const terminal = new Set<string>(terminalStatusNames);
      if (rows.length !== orderIds.length || !rows.every((r) => r.settled && terminal.has(r.status))) return undefined;
      return new Map(rows.map((r) => [r.order_id, r.status]));
    },
    timeoutMs,
    `${orderIds.length} orders to reach a terminal status with nothing awaited`,
    200,
  );
}

/** Orders not terminal yet (of all in the database). */
export async function ordersInFlight(sys: SagaSystem): Promise<number> {
  const { rows } = await sys.db.query<{ n: string }>("SELECT count(*) AS n FROM orders.orders WHERE status NOT IN ('CONFIRMED', 'REJECTED', 'CANCELLED')");
  return Number(rows[0]?.n ?? 0);
}

/** A small deterministic PRNG (mulberry32), so a failing run can be repeated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** connect-node reports a call whose connection closed under it as ABORTED (reset) or CANCELED (HTTP/2 CANCEL). */
const retriedCodes: ReadonlySet<Code> = new Set([Code.Unavailable, Code.Aborted, Code.Canceled, Code.DeadlineExceeded]);

/**
 * Calls fn again (with a growing pause) when the server says UNAVAILABLE, the
 * connection closed under the call (the server killed) or the deadline passed — what a
 * client with an idempotency key does under overload or while a server restarts.
 * Counts the retries in `counter.retries` when given.
 */
export async function retryUnavailable<T>(fn: () => Promise<T>, counter?: { retries: number }, attempts = 8): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      const code = ConnectError.from(error).code;
      if (attempt >= attempts || !retriedCodes.has(code)) throw error;
      if (counter) counter.retries++;
      await sleep(250 * attempt + Math.floor(Math.random() * 250));
    }
  }
}
