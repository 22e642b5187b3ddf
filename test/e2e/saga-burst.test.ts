/**
 * The burst: 520 concurrent CreateOrder calls across 100 customers — varied
 * wallets (some empty, some without a wallet), scarce products, two blocked
 * customers, an amount limit, a velocity limit, and cancels racing the saga —
 * then an audit straight from Postgres. The figures go to the test output.
 */
import { beforeAll, describe, expect, test } from "vitest";
import { auditSaga, auditUntilClean, formatAudit, snapshotStock, type StockBaseline } from "../support/saga-audit.js";
import { stopAndReportOnFailure, prng, retryUnavailable, type SagaSystem, sleep, startSagaSystem, topUp, waitAllSettled, waitBusQuiet, waitTerminal } from "../support/saga-system.js";

let sys: SagaSystem;
let baseline: StockBaseline;
const topUps = new Map<string, bigint>();
const random = prng(500);
const pick = <T>(list: readonly T[]): T => {
  const item = list[Math.floor(random() * list.length)];
  if (item === undefined) throw new Error("empty list");
  return item;
};

const customers = Array.from({ length: 100 }, (_, i) => `c${String(i).padStart(3, "0")}`);
const blocked = ["c007", "c042"];
/** These place 10 orders each; the velocity limit is 8 per minute. */
const heavy = new Set(["c010", "c011", "c012", "c013"]);
const skus = ["KB-001", "MS-002", "MN-003", "HS-004", "CB-005", "DK-006", "WC-007", "LS-008"];

beforeAll(async () => {
  sys = await startSagaSystem({
    name: "burst",
    serviceEnv: {
      fraud: {
        FRAUD_BLOCKED_CUSTOMERS: blocked.join(","),
        FRAUD_MAX_ORDER_AMOUNT_MINOR: "150000",
        FRAUD_VELOCITY_MAX_ORDERS: "8",
        FRAUD_VELOCITY_WINDOW_SECONDS: "300",
      },
      order: { SAGA_STEP_TIMEOUT_MS: "10000" },
    },
  });
  // Scarcity: DK-006 down to 60, MN-003 down to 80 (recorded as adjustments, which the audit counts).
  await sys.inventory.adjustStock({ sku: "DK-006", delta: -90n, reason: "burst: scarce" });
  await sys.inventory.adjustStock({ sku: "MN-003", delta: -120n, reason: "burst: scarce" });
  baseline = await snapshotStock(sys.db);
  // Wallets: 10 % none, 20 % $40, 30 % $400, 40 % $4,000; every fifth gets a second top-up.
  await Promise.all(
    customers.map(async (c, i) => {
      const tier = i % 10;
      if (tier === 0) return;
      const amount = tier <= 2 ? 4_000n : tier <= 5 ? 40_000n : 400_000n;
      await topUp(sys, c, amount, `${c}-1`);
      let total = amount;
      if (i % 5 === 1) {
        await topUp(sys, c, 25_000n, `${c}-2`);
        total += 25_000n;
      }
      topUps.set(c, total);
    }),
  );
}, 120_000);

stopAndReportOnFailure(() => sys);

describe("burst of concurrent orders", () => {
  test("520 concurrent orders from 100 customers: all terminal, audit holds", async () => {
    const requests = customers.flatMap((customerId) =>
      Array.from({ length: heavy.has(customerId) ? 10 : 5 }, (_, n) => {
        const lines = 1 + Math.floor(random() * 3);
        const chosen = [...new Set(Array.from({ length: lines }, () => pick(skus)))];
        return { customerId, idempotencyKey: `${customerId}-${n}`, items: chosen.map((sku) => ({ sku, quantity: BigInt(1 + Math.floor(random() * 3)) })) };
      }),
    );
    expect(requests.length).toBeGreaterThanOrEqual(500);

    const counter = { retries: 0 };
    const started = Date.now();
    const cancels: Promise<string>[] = [];
    const results = await Promise.allSettled(
      requests.map(async (request, i) => {
        // A client with an idempotency key retries what the server could not do now: under the
        // burst, order answers UNAVAILABLE when its pricing call to inventory or its database pool
        // times out.
        const { order } = await retryUnavailable(() => sys.order.createOrder(request, { timeoutMs: 60_000 }), counter);
        if (!order) throw new Error("no order");
        // Every 17th order is cancelled while the burst runs: half of them 0-3 s after the create,
        // racing their saga; the other half once CONFIRMED (refund and restock), if they get there.
        if (i % 17 === 0) {
          const cancel = () =>
            retryUnavailable(() => sys.order.cancelOrder({ orderId: order.orderId, reason: "burst: changed my mind" }), counter).then(
              () => "accepted",
              (error: unknown) => (error instanceof Error && /cannot be cancelled|being rejected/.test(error.message) ? "refused" : `error: ${String(error)}`),
            );
          if (i % 34 === 0) cancels.push(sleep(Math.floor(random() * 3_000)).then(cancel));
          else cancels.push(waitTerminal(sys, order.orderId, 120_000).then((status) => (status === "CONFIRMED" ? cancel().then((r) => `${r} after CONFIRMED`) : `not cancelled: ${status}`)));
        }
        return order.orderId;
      }),
    );
    const createdMs = Date.now() - started;
    const failed = results.filter((r) => r.status === "rejected").map((r) => String(r.reason));
    expect(failed).toEqual([]);
    const ids = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const cancelOutcomes = await Promise.all(cancels);
    expect(cancelOutcomes.filter((c) => c.startsWith("error"))).toEqual([]);

    await waitAllSettled(sys, ids, 150_000);
    const settledMs = Date.now() - started;
    const report = await auditUntilClean(sys.db, { baseline, topUps, orderIds: ids }, 20_000);
    const reasons = await sys.db.query<{ status: string; reason: string; n: string }>(
      `SELECT status, regexp_replace(status_reason, '(out of stock: ).*', '\\1…') AS reason, count(*) AS n
         FROM orders.orders WHERE order_id = ANY($1::uuid[]) GROUP BY 1, 2 ORDER BY 1, 3 DESC`,
      [ids],
    );
    console.log(
      [
        formatAudit(`burst: ${ids.length} concurrent CreateOrder calls, 100 customers`, report),
        `client side: ${ids.length} creates answered in ${(createdMs / 1000).toFixed(2)} s (${counter.retries} calls retried after UNAVAILABLE); all settled after ${(settledMs / 1000).toFixed(2)} s (${(ids.length / (settledMs / 1000)).toFixed(1)} orders/s end to end)`,
        `cancels: ${Object.entries(cancelOutcomes.reduce<Record<string, number>>((acc, c) => ({ ...acc, [c]: (acc[c] ?? 0) + 1 }), {})).map(([c, n]) => `${n} ${c}`).join(", ")}`,
        "outcomes by reason:",
        ...reasons.rows.map((r) => `  ${r.status.padEnd(9)} ${r.n.padStart(4)}  ${r.reason}`),
      ].join("\n"),
    );
    expect(report.violations).toEqual([]);
    expect(report.orders).toBe(requests.length);
    // The scenario produced every kind of outcome.
    const byReason = reasons.rows.map((r) => r.reason).join("\n");
    for (const expected of [/insufficient funds/, /no wallet/, /out of stock/, /fraud check declined/, /payment charged/, /changed my mind/]) expect(byReason).toMatch(expected);

    // And once every message is consumed and every outbox drained, nothing changed.
    await waitBusQuiet(sys, 60_000);
    const after = await auditSaga(sys.db, { baseline, topUps, orderIds: ids });
    expect(after.violations).toEqual([]);
    expect(after.byStatus).toEqual(report.byStatus);
  }, 240_000);
});
