/**
 * The saga streams at their byte bound: each holds at most 32 KiB, far less than a burst of
 * orders publishes, while the order service trims what the consumers have finished. Every saga
 * stream refuses what it has no room for: the order service's outbox keeps the commands and
 * conclusion events, a participant its replies (holding their commands). Nothing is dropped, and
 * nothing waits on itself: every order concludes once, money, stock and notifications add up,
 * and the streams end empty.
 */
import { beforeAll, describe, expect, test } from "vitest";
import { sagaStreams } from "../../services/platform/saga-routes.js";
import { auditUntilClean, formatAudit, snapshotStock, type StockBaseline } from "../support/saga-audit.js";
import { eventually, retryUnavailable, type SagaSystem, startSagaSystem, stopAndReportOnFailure, topUp, waitAllSettled, waitBusQuiet } from "../support/saga-system.js";

const BOUND = 32 * 1024;
const customers = Array.from({ length: 40 }, (_, i) => `b${String(i).padStart(2, "0")}`);
const skus = ["KB-001", "MS-002", "HS-004", "CB-005"];

let sys: SagaSystem;
let baseline: StockBaseline;
const topUps = new Map<string, bigint>();

beforeAll(async () => {
  sys = await startSagaSystem({ name: "bound", env: { NATS_STREAM_MAX_BYTES: String(BOUND) }, serviceEnv: { order: { SAGA_STEP_TIMEOUT_MS: "2000" } } });
  baseline = await snapshotStock(sys.db);
  await Promise.all(customers.map((c) => topUp(sys, c, 1_000_000n).then(() => topUps.set(c, 1_000_000n))));
}, 120_000);

stopAndReportOnFailure(() => sys);

describe("saga streams at their byte bound", () => {
  test("300 orders through streams bounded at 32 KiB: each concludes once, the audit holds, the streams end empty", async () => {
    const streams = sagaStreams;
    for (const stream of streams) expect((await sys.jsm.streams.info(stream)).config, stream).toMatchObject({ max_bytes: BOUND, discard: "new" });
    const logMark = sys.logs.size;
    // The most each stream held, sampled every 50 ms.
    const peaks = new Map(streams.map((stream) => [stream, 0]));
    const sampler = setInterval(() => {
      for (const stream of streams) void sys.jsm.streams.info(stream).then((info) => peaks.set(stream, Math.max(peaks.get(stream) ?? 0, info.state.bytes)), () => undefined);
    }, 50);
    const ids = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const request = { customerId: customers[i % customers.length] ?? "", idempotencyKey: `bound-${i}`, items: [{ sku: skus[i % skus.length] ?? "", quantity: 1n }] };
        const { order } = await retryUnavailable(() => sys.order.createOrder(request, { timeoutMs: 60_000 }));
        if (!order) throw new Error("no order");
        return order.orderId;
      }),
    );
    await waitAllSettled(sys, ids, 150_000);
    clearInterval(sampler);
    const report = await auditUntilClean(sys.db, { baseline, topUps, orderIds: ids }, 20_000);
    console.log([formatAudit("bound: 300 orders, saga streams bounded at 32 KiB", report), `most bytes held: ${[...peaks].map(([stream, bytes]) => `${stream} ${bytes}`).join(", ")}`].join("\n"));
    // Funded customers and stock enough: every order confirmed, none failed by a step deadline
    // (a step whose command waits in the outbox, refused, is deferred like one queued on the bus).
    const outcomes = await sys.db.query<{ status: string; n: string }>("SELECT status, count(*) AS n FROM orders.orders WHERE order_id = ANY($1::uuid[]) GROUP BY 1", [ids]);
    expect(outcomes.rows).toEqual([{ status: "CONFIRMED", n: "300" }]);
    expect(report.violations).toEqual([]);
    expect(report.orders).toBe(300);
    // The bound was reached, not merely set: every stream held over half of it (ORDER refuses a
    // bundle of up to 64 events, over 10 KiB, with less room than that left).
    for (const [stream, bytes] of peaks) expect(bytes, stream).toBeGreaterThan(BOUND / 2);
    // Commands and replies were refused, and waited: in the outbox, and with the participants.
    const refusedSubjects = new Set(sys.logs.since(logMark).flatMap((line) => [...line.matchAll(/publish to ([a-z]+\.(?:cmd|evt))\.[a-z]+ refused: maximum bytes exceeded/g)].map((m) => m[1])));
    expect(refusedSubjects.has("inventory.cmd") || refusedSubjects.has("payment.cmd") || refusedSubjects.has("fraud.cmd"), [...refusedSubjects].join()).toBe(true);
    expect(refusedSubjects.has("inventory.evt") || refusedSubjects.has("payment.evt") || refusedSubjects.has("fraud.evt"), [...refusedSubjects].join()).toBe(true);
    await waitBusQuiet(sys, 60_000);
    await eventually(async () => (await Promise.all(streams.map(async (stream) => (await sys.jsm.streams.info(stream)).state.messages))).every((n) => n === 0), 15_000, "the saga streams trimmed");
  }, 240_000);

  test("with the notification service down, ORDER refuses the conclusion events it has no room for while the sagas go on, and once it is back every order has its notification", async () => {
    await sys.system.stopService("notification");
    const logMark = sys.logs.size;
    const place = (count: number, prefix: string) =>
      Promise.all(
        Array.from({ length: count }, async (_, i) => {
          const request = { customerId: customers[i % customers.length] ?? "", idempotencyKey: `${prefix}-${i}`, items: [{ sku: skus[i % skus.length] ?? "", quantity: 1n }] };
          const { order } = await retryUnavailable(() => sys.order.createOrder(request, { timeoutMs: 60_000 }));
          if (!order) throw new Error("no order");
          return order.orderId;
        }),
      );
    const first = await place(200, "bound-down");
    // The saga does not wait for notifications: every order concludes meanwhile.
    await waitAllSettled(sys, first, 150_000);
    // Its conclusion events are held: in ORDER, up to the bound, and the rest in the outbox.
    await eventually(async () => sys.logs.since(logMark).some((line) => line.includes("refused: maximum bytes exceeded")), 15_000, "ORDER to refuse a conclusion event");
    const heldEvents = async () => Number((await sys.db.query<{ n: string }>("SELECT count(*) AS n FROM orders.outbox WHERE published_at IS NULL AND subject LIKE 'order.evt.%'")).rows[0]?.n);
    expect(await heldEvents()).toBeGreaterThan(0);
    // While ORDER refuses, the outbox holds back its events only: the commands of new orders go
    // out, and those orders conclude too.
    const later = await place(50, "bound-down-later");
    await waitAllSettled(sys, later, 60_000);
    expect(await heldEvents()).toBeGreaterThan(0);
    const ids = [...first, ...later];
    await sys.system.restart("notification");
    const notified = async () => (await sys.db.query<{ n: string }>("SELECT count(DISTINCT order_id) AS n FROM notification.notifications WHERE order_id = ANY($1::text[])", [ids])).rows[0]?.n;
    await eventually(async () => (await notified()) === String(ids.length), 60_000, "a notification for every order");
    const report = await auditUntilClean(sys.db, { baseline, topUps, orderIds: ids }, 20_000);
    console.log(formatAudit("bound: 250 orders while the notification service was down", report));
    expect(report.violations).toEqual([]);
  }, 240_000);
});
