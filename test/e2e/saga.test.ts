/**
 * The order saga end to end, every service its own process on its own NATS:
 * happy path (watched with WatchOrder), the three kinds of rejection (each giving back
 * what the steps alongside took), the reservation and the charge answering before the
 * fraud check (then approved, or cancelled), and the cancel of a confirmed order with
 * refund and restock.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { beforeAll, describe, expect, test } from "vitest";
import { NotificationKind } from "../../gen/orderflow/notification/v1/notification_pb.js";
import { OrderService, OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { PaymentStatus } from "../../gen/orderflow/payment/v1/payment_pb.js";
import { startRecording, stopRecording } from "../../services/platform/bus/index.js";
import { sagaStreams } from "../../services/platform/saga-routes.js";
import { auditSaga, auditUntilClean, formatAudit, snapshotStock, type StockBaseline } from "../support/saga-audit.js";
import { stopAndReportOnFailure, addProduct, eventually, isTerminalStatus, type SagaSystem, startSagaSystem, stockOf, waitBusQuiet, waitTerminal, fundInto } from "../support/saga-system.js";

let sys: SagaSystem;
let baseline: StockBaseline;
const topUps = new Map<string, bigint>();

const fund = fundInto(() => sys, topUps);

async function ledgerOf(orderId: string): Promise<string[]> {
  const { rows } = await sys.db.query<{ kind: string; amount_minor: string }>("SELECT kind, amount_minor FROM payment.ledger_entries WHERE order_id = $1 ORDER BY id", [orderId]);
  return rows.map((r) => `${r.kind} ${r.amount_minor}`);
}

/** An order's payment as payment recorded it: charged then refunded, or refused by the refund that overtook it. */
async function givenBack(orderId: string): Promise<string> {
  const { rows } = await sys.db.query<{ status: string; decline_reason: string }>("SELECT status, decline_reason FROM payment.payments WHERE order_id = $1", [orderId]);
  const ledger = await ledgerOf(orderId);
  const payment = rows.map((r) => `${r.status}${r.decline_reason ? ` (${r.decline_reason})` : ""}`).join();
  if (payment === "REFUNDED" && ledger.length === 2 && ledger[0] === `CHARGE ${ledger[1]!.replace("REFUND ", "-")}`) return "refunded";
  if (payment === "DECLINED (order cancelled)" && ledger.length === 0) return "refused";
  return `${payment || "no payment"}; ledger ${ledger.join(", ") || "empty"}`;
}

async function reservationOf(orderId: string): Promise<string | undefined> {
  const { rows } = await sys.db.query<{ status: string }>("SELECT status FROM inventory.reservations WHERE order_id = $1", [orderId]);
  return rows[0]?.status;
}

beforeAll(async () => {
  sys = await startSagaSystem({
    name: "saga",
    serviceEnv: {
      fraud: { FRAUD_BLOCKED_CUSTOMERS: "mallory,trudy", FRAUD_MAX_ORDER_AMOUNT_MINOR: "100000" },
    },
  });
  // Products of their own, so each scenario's stock figures are exact.
  await addProduct(sys, "E2E-HAPPY", 2_500n, 10n);
  await addProduct(sys, "E2E-FUNDS", 4_000n, 10n);
  await addProduct(sys, "E2E-SCARCE", 1_000n, 1n);
  await addProduct(sys, "E2E-FRAUD", 60_000n, 10n);
  await addProduct(sys, "E2E-CANCEL", 3_000n, 10n);
  await addProduct(sys, "E2E-EARLY", 2_000n, 10n);
  baseline = await snapshotStock(sys.db);
}, 120_000);

stopAndReportOnFailure(() => sys);

describe("order saga", () => {
  test("happy path: CONFIRMED (watched), wallet debited by the total, stock committed, one notification; the streams then hold nothing", async () => {
    // What the saga publishes to and from inventory is kept for the checks below: the streams let
    // go of each message once the saga's consumers have finished it.
    const inventoryStreams = ["INVENTORY", "INVENTORY_COMMANDS"];
    await startRecording(sys.jsm, inventoryStreams, "e2e-happy-path");
    await fund("alice", 100_000n);
    const { order } = await sys.order.createOrder({ customerId: "alice", items: [{ sku: "E2E-HAPPY", quantity: 3n }, { sku: "CB-005", quantity: 2n }] });
    if (!order) throw new Error("no order");
    const total = 3n * 2_500n + 2n * 1_200n;
    expect(order.total?.amountMinor).toBe(total);
    expect(order.status).toBe(OrderStatus.PENDING);

    // WatchOrder streams each change until the order is terminal, then ends.
    const seen: OrderStatus[] = [];
    for await (const { order: o } of sys.order.watchOrder({ orderId: order.orderId }, { timeoutMs: 20_000 })) if (o) seen.push(o.status);
    expect(seen.at(-1)).toBe(OrderStatus.CONFIRMED);
    expect(seen.filter(isTerminalStatus)).toEqual([OrderStatus.CONFIRMED]);
    const forward = [OrderStatus.PENDING, OrderStatus.FRAUD_APPROVED, OrderStatus.STOCK_RESERVED, OrderStatus.CONFIRMED];
    expect(seen.map((s) => forward.indexOf(s))).toEqual([...seen.map((s) => forward.indexOf(s))].sort());
    expect(seen.every((s) => forward.includes(s))).toBe(true);

    const { order: final } = await sys.order.getOrder({ orderId: order.orderId });
    expect(final?.history.map((h) => OrderStatus[h.toStatus])).toEqual(["PENDING", "FRAUD_APPROVED", "STOCK_RESERVED", "CONFIRMED"]);

    const { wallet } = await sys.payment.getWallet({ customerId: "alice" });
    expect(wallet?.balance?.amountMinor).toBe(100_000n - total);
    const { payments } = await sys.payment.listPayments({ customerId: "alice" });
    expect(payments.map((p) => [p.orderId, PaymentStatus[p.status], p.amount?.amountMinor])).toEqual([[order.orderId, "CHARGED", total]]);
    expect(await ledgerOf(order.orderId)).toEqual([`CHARGE ${-total}`]);

    // Inventory commits the stock on order.evt.confirmed: the order awaits nothing, sends no
    // inventory.cmd.commit, and once the stock is committed no inventory.evt.committed was published.
    const { rows: saga } = await sys.db.query("SELECT awaiting, in_flight FROM orders.orders WHERE order_id = $1", [order.orderId]);
    expect(saga).toEqual([{ awaiting: [], in_flight: false }]);
    await eventually(async () => (await stockOf(sys, "E2E-HAPPY")).sold === 3n, 10_000, "stock committed");
    expect(await stockOf(sys, "E2E-HAPPY")).toEqual({ available: 7n, reserved: 0n, sold: 3n });
    expect(await reservationOf(order.orderId)).toBe("COMMITTED");
    const inventoryEvents = (await sys.jsm.streams.info("INVENTORY", { subjects_filter: ">" })).state.subjects ?? {};
    expect(Object.keys(inventoryEvents)).toContain("inventory.evt.reserved");
    expect(Object.keys(inventoryEvents)).not.toContain("inventory.evt.committed");
    const inventoryCommands = (await sys.jsm.streams.info("INVENTORY_COMMANDS", { subjects_filter: ">" })).state.subjects ?? {};
    expect(Object.keys(inventoryCommands)).toContain("inventory.cmd.reserve");
    expect(Object.keys(inventoryCommands)).not.toContain("inventory.cmd.commit");

    const notification = sys.notification;
    const notes = await eventually(async () => {
      const { notifications } = await notification.listNotifications({ customerId: "alice" });
      return notifications.length > 0 ? notifications : undefined;
    }, 10_000, "a notification for alice");
    expect(notes.map((n) => [n.orderId, NotificationKind[n.kind]])).toEqual([[order.orderId, "ORDER_CONFIRMED"]]);

    // The order service trims the streams to what their consumers have yet to finish: nothing, now.
    await stopRecording(sys.jsm, inventoryStreams, "e2e-happy-path");
    await waitBusQuiet(sys, 10_000);
    const held = async () => Promise.all(sagaStreams.map(async (stream) => (await sys.jsm.streams.info(stream)).state.messages));
    await eventually(async () => (await held()).every((n) => n === 0), 15_000, "the saga streams trimmed");
  });

  test("insufficient funds: REJECTED once the stock reserved alongside is released, nothing charged", async () => {
    await fund("bob", 5_000n);
    const { order } = await sys.order.createOrder({ customerId: "bob", items: [{ sku: "E2E-FUNDS", quantity: 2n }] });
    if (!order) throw new Error("no order");
    expect(await waitTerminal(sys, order.orderId)).toBe("REJECTED");
    const { order: final } = await sys.order.getOrder({ orderId: order.orderId });
    expect(final?.statusReason).toMatch(/insufficient funds/);
    // The charge runs alongside the fraud check and the reservation: either may have passed first.
    expect([["PENDING", "REJECTED"], ["PENDING", "FRAUD_APPROVED", "REJECTED"], ["PENDING", "FRAUD_APPROVED", "STOCK_RESERVED", "REJECTED"]]).toContainEqual(
      final?.history.map((h) => OrderStatus[h.toStatus]),
    );
    // REJECTED comes only after the release was confirmed by inventory (released, or refused
    // by the release's tombstone had it overtaken the reservation).
    expect(await stockOf(sys, "E2E-FUNDS")).toEqual({ available: 10n, reserved: 0n, sold: 0n });
    expect(await reservationOf(order.orderId)).toBe("RELEASED");
    const { wallet } = await sys.payment.getWallet({ customerId: "bob" });
    expect(wallet?.balance?.amountMinor).toBe(5_000n);
    const { payments } = await sys.payment.listPayments({ customerId: "bob" });
    expect(payments.map((p) => [PaymentStatus[p.status], p.declineReason])).toEqual([["DECLINED", "insufficient funds"]]);
    expect(await ledgerOf(order.orderId)).toEqual([]);
  });

  test("out of stock: REJECTED once the charge taken alongside is refunded", async () => {
    await fund("carol", 100_000n);
    const { order } = await sys.order.createOrder({ customerId: "carol", items: [{ sku: "E2E-SCARCE", quantity: 2n }, { sku: "CB-005", quantity: 1n }] });
    if (!order) throw new Error("no order");
    expect(await waitTerminal(sys, order.orderId)).toBe("REJECTED");
    const { order: final } = await sys.order.getOrder({ orderId: order.orderId });
    expect(final?.statusReason).toMatch(/out of stock: E2E-SCARCE/);
    // The fraud check runs alongside the reservation: it may or may not have passed first.
    expect([["PENDING", "REJECTED"], ["PENDING", "FRAUD_APPROVED", "REJECTED"]]).toContainEqual(final?.history.map((h) => OrderStatus[h.toStatus]));
    expect(await stockOf(sys, "E2E-SCARCE")).toEqual({ available: 1n, reserved: 0n, sold: 0n });
    expect(await reservationOf(order.orderId)).toBe("FAILED");
    expect(await givenBack(order.orderId)).toMatch(/^(refunded|refused)$/);
    expect((await sys.payment.getWallet({ customerId: "carol" })).wallet?.balance?.amountMinor).toBe(100_000n);
  });

  test("fraud declines (blocked customer, amount over the limit): REJECTED once the stock and money taken alongside are given back", async () => {
    await fund("mallory", 100_000n);
    await fund("dave", 1_000_000n);
    const blocked = (await sys.order.createOrder({ customerId: "mallory", items: [{ sku: "E2E-FRAUD", quantity: 1n }] })).order;
    const tooBig = (await sys.order.createOrder({ customerId: "dave", items: [{ sku: "E2E-FRAUD", quantity: 2n }] })).order;
    if (!blocked || !tooBig) throw new Error("no order");
    expect(await waitTerminal(sys, blocked.orderId)).toBe("REJECTED");
    expect(await waitTerminal(sys, tooBig.orderId)).toBe("REJECTED");
    for (const o of [blocked, tooBig]) {
      const { order: final } = await sys.order.getOrder({ orderId: o.orderId });
      expect(final?.statusReason).toMatch(/^fraud check declined: /);
      expect(final?.history.map((h) => OrderStatus[h.toStatus])).toEqual(["PENDING", "REJECTED"]);
      // Released, or refused by the release's tombstone had it overtaken the reservation.
      expect(await reservationOf(o.orderId)).toBe("RELEASED");
      expect(await givenBack(o.orderId)).toMatch(/^(refunded|refused)$/);
    }
    expect((await sys.order.getOrder({ orderId: blocked.orderId })).order?.statusReason).toMatch(/block/i);
    expect((await sys.order.getOrder({ orderId: tooBig.orderId })).order?.statusReason).toMatch(/amount|limit/i);
    expect(await stockOf(sys, "E2E-FRAUD")).toEqual({ available: 10n, reserved: 0n, sold: 0n });
    expect((await sys.payment.getWallet({ customerId: "mallory" })).wallet?.balance?.amountMinor).toBe(100_000n);
    expect((await sys.payment.getWallet({ customerId: "dave" })).wallet?.balance?.amountMinor).toBe(1_000_000n);
  });

  /** An order of E2E-EARLY placed while fraud is stopped, once its stock is held, its money taken, and the order knows both. */
  async function placeWithStockHeld(customerId: string, client: Pick<typeof sys.order, "createOrder"> = sys.order): Promise<string> {
    await fund(customerId, 100_000n);
    await sys.system.stopService("fraud");
    const before = await stockOf(sys, "E2E-EARLY");
    const { order } = await client.createOrder({ customerId, items: [{ sku: "E2E-EARLY", quantity: 2n }] });
    if (!order) throw new Error("no order");
    const saga = await eventually(
      async () => {
        const { rows } = await sys.db.query<{ status: string; awaiting: string[]; stock_reserved: boolean; charged: boolean }>(
          "SELECT status, awaiting, stock_reserved, charged FROM orders.orders WHERE order_id = $1",
          [order.orderId],
        );
        return rows[0]?.stock_reserved && rows[0].charged ? rows[0] : undefined;
      },
      10_000,
      "the reservation and the charge to be applied while fraud is down",
    );
    expect(saga).toEqual({ status: "PENDING", awaiting: ["fraud"], stock_reserved: true, charged: true });
    expect(await reservationOf(order.orderId)).toBe("RESERVED");
    expect(await stockOf(sys, "E2E-EARLY")).toEqual({ ...before, available: before.available - 2n, reserved: before.reserved + 2n });
    return order.orderId;
  }

  test("stock reserved and money taken before the fraud check answers: PENDING holds them; the approval passes FRAUD_APPROVED and STOCK_RESERVED to CONFIRMED", async () => {
    let orderId: string;
    try {
      orderId = await placeWithStockHeld("frank");
    } finally {
      await sys.system.restart("fraud");
    }
    expect(await waitTerminal(sys, orderId)).toBe("CONFIRMED");
    const { order: final } = await sys.order.getOrder({ orderId });
    expect(final?.history.map((h) => [OrderStatus[h.toStatus], h.reason])).toEqual([
      ["PENDING", "order placed"],
      ["FRAUD_APPROVED", "fraud check passed"],
      ["STOCK_RESERVED", "stock reserved"],
      ["CONFIRMED", "payment charged"],
    ]);
    await eventually(async () => (await stockOf(sys, "E2E-EARLY")).sold === 2n, 10_000, "stock committed");
    expect(await stockOf(sys, "E2E-EARLY")).toEqual({ available: 8n, reserved: 0n, sold: 2n });
    expect(await ledgerOf(orderId)).toEqual(["CHARGE -4000"]);
  });

  test("cancel of a PENDING order with its stock held and money taken (over Connect): CANCELLING until released and refunded, then CANCELLED; the late fraud answer changes nothing", async () => {
    const overConnect = createClient(OrderService, createConnectTransport({ baseUrl: sys.test.url("order"), httpVersion: "1.1" }));
    let orderId: string;
    try {
      orderId = await placeWithStockHeld("grace", overConnect);
      const { order: cancelling } = await overConnect.cancelOrder({ orderId, reason: "found it cheaper" });
      expect(cancelling?.status).toBe(OrderStatus.CANCELLING);
      expect(await waitTerminal(sys, orderId)).toBe("CANCELLED");
    } finally {
      await sys.system.restart("fraud");
    }
    // Fraud answers the command it missed; the order has moved on, so the answer is ignored.
    await waitBusQuiet(sys, 20_000);
    const { order: final } = await overConnect.getOrder({ orderId });
    expect(final?.history.map((h) => OrderStatus[h.toStatus])).toEqual(["PENDING", "CANCELLING", "CANCELLED"]);
    expect(await reservationOf(orderId)).toBe("RELEASED");
    expect(await stockOf(sys, "E2E-EARLY")).toEqual({ available: 8n, reserved: 0n, sold: 2n });
    expect(await givenBack(orderId)).toBe("refunded");
    expect((await sys.payment.getWallet({ customerId: "grace" })).wallet?.balance?.amountMinor).toBe(100_000n);
  });

  test("cancel of a CONFIRMED order: CANCELLED, refund in the ledger, stock back to available", async () => {
    await fund("erin", 50_000n);
    const { order } = await sys.order.createOrder({ customerId: "erin", items: [{ sku: "E2E-CANCEL", quantity: 4n }] });
    if (!order) throw new Error("no order");
    expect(await waitTerminal(sys, order.orderId)).toBe("CONFIRMED");
    await eventually(async () => (await stockOf(sys, "E2E-CANCEL")).sold === 4n, 10_000, "stock committed");
    expect((await sys.payment.getWallet({ customerId: "erin" })).wallet?.balance?.amountMinor).toBe(50_000n - 12_000n);

    // GetOrder of a terminal order is cached (Redis): the cancel must not leave the CONFIRMED copy behind,
    // also when the calls spell the id in upper case (a UUID is the same in either).
    const upper = order.orderId.toUpperCase();
    expect((await sys.order.getOrder({ orderId: order.orderId })).order?.status).toBe(OrderStatus.CONFIRMED);
    expect((await sys.order.getOrder({ orderId: upper })).order).toMatchObject({ orderId: order.orderId, status: OrderStatus.CONFIRMED });
    const { order: cancelling } = await sys.order.cancelOrder({ orderId: upper, reason: "changed my mind" });
    expect(cancelling?.status).toBe(OrderStatus.CANCELLING);
    expect((await sys.order.getOrder({ orderId: order.orderId })).order?.status).not.toBe(OrderStatus.CONFIRMED);
    const seen: OrderStatus[] = [];
    for await (const { order: o } of sys.order.watchOrder({ orderId: upper }, { timeoutMs: 20_000 })) if (o) seen.push(o.status);
    expect(seen.at(-1)).toBe(OrderStatus.CANCELLED);
    // Cancelling twice is harmless.
    expect((await sys.order.cancelOrder({ orderId: order.orderId, reason: "again" })).order?.status).toBe(OrderStatus.CANCELLED);

    const { order: final } = await sys.order.getOrder({ orderId: order.orderId });
    expect(final?.history.map((h) => OrderStatus[h.toStatus])).toEqual(["PENDING", "FRAUD_APPROVED", "STOCK_RESERVED", "CONFIRMED", "CANCELLING", "CANCELLED"]);
    // That read, from Postgres, left a copy in Redis. Served from it, the order is the same message
    // over gRPC (grpc-js writes the cached bytes as they are) and over Connect (connect-node decodes them).
    const redis = new Redis(sys.redisUrl, { maxRetriesPerRequest: 1 });
    const copy = await redis.getBuffer(`order:${order.orderId}`).finally(() => redis.quit());
    expect(copy?.toString("latin1")).toMatch(/^\d+:./s);
    expect((await sys.order.getOrder({ orderId: order.orderId })).order).toEqual(final);
    const overConnect = createClient(OrderService, createConnectTransport({ baseUrl: sys.test.url("order"), httpVersion: "1.1" }));
    expect((await overConnect.getOrder({ orderId: order.orderId })).order).toEqual(final);
    const { payments } = await sys.payment.listPayments({ customerId: "erin" });
    expect(payments.map((p) => [PaymentStatus[p.status], p.amount?.amountMinor])).toEqual([["REFUNDED", 12_000n]]);
    expect(await ledgerOf(order.orderId)).toEqual(["CHARGE -12000", "REFUND 12000"]);
    expect((await sys.payment.getWallet({ customerId: "erin" })).wallet?.balance?.amountMinor).toBe(50_000n);
    expect(await stockOf(sys, "E2E-CANCEL")).toEqual({ available: 10n, reserved: 0n, sold: 0n });
    expect(await reservationOf(order.orderId)).toBe("RELEASED");
    const notification = sys.notification;
    const kinds = await eventually(async () => {
      const { notifications } = await notification.listNotifications({ customerId: "erin" });
      return notifications.length >= 2 ? notifications.map((n) => NotificationKind[n.kind]).sort() : undefined;
    }, 10_000, "two notifications for erin");
    expect(kinds).toEqual(["ORDER_CANCELLED", "ORDER_CONFIRMED"]);
  });

  test("two order replicas: a CONFIRMED order each serves from memory; a cancel through one, and the other no longer answers CONFIRMED", async () => {
    const replica = await sys.test.system.addReplica("order");
    try {
      const second = createClient(OrderService, createGrpcTransport({ baseUrl: sys.test.system.url(replica) }));
      const servedFromMemory = async () => {
        const metrics = await (await fetch(sys.test.system.info(replica).metricsUrl)).text();
        return Number(/^orderflow_order_cache_lookups_total\{result="local"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
      };
      await fund("judy", 50_000n);
      const { order } = await sys.order.createOrder({ customerId: "judy", items: [{ sku: "E2E-CANCEL", quantity: 1n }] });
      if (!order) throw new Error("no order");
      expect(await waitTerminal(sys, order.orderId)).toBe("CONFIRMED");
      for (const client of [sys.order, second, sys.order, second]) expect((await client.getOrder({ orderId: order.orderId })).order?.status).toBe(OrderStatus.CONFIRMED);
      expect(await servedFromMemory()).toBeGreaterThanOrEqual(1);

      expect((await sys.order.cancelOrder({ orderId: order.orderId, reason: "changed my mind" })).order?.status).toBe(OrderStatus.CANCELLING);
      // The second replica's copy, read just now, would live 5 s: it is dropped on the eviction instead (2 s leaves room for a loaded machine).
      await eventually(async () => (await second.getOrder({ orderId: order.orderId })).order?.status !== OrderStatus.CONFIRMED, 2_000, "the second replica to drop its copy");
      expect(await waitTerminal(sys, order.orderId)).toBe("CANCELLED");
      expect((await second.getOrder({ orderId: order.orderId })).order?.status).toBe(OrderStatus.CANCELLED);
    } finally {
      await sys.test.system.stopService(replica);
    }
  });

  test("audit after every scenario: each order terminal once, money and stock conserved", async () => {
    const report = await auditUntilClean(sys.db, { baseline, topUps }, 10_000);
    console.log(formatAudit("saga scenarios", report));
    expect(report.violations).toEqual([]);
    expect(report.orders).toBe(9);
  });

  test("the audit catches broken books (tampered inside a transaction that is rolled back)", async () => {
    const tx = await sys.db.connect();
    try {
      await tx.query("BEGIN");
      await tx.query("UPDATE payment.wallets SET balance_minor = balance_minor + 1 WHERE customer_id = 'alice'");
      await tx.query("UPDATE inventory.products SET available = available + 1 WHERE sku = 'E2E-HAPPY'");
      await tx.query("UPDATE payment.payments SET status = 'DECLINED' WHERE customer_id = 'alice'");
      await tx.query("UPDATE orders.orders SET status = 'FRAUD_APPROVED', step_deadline = now() + interval '1 hour' WHERE customer_id = 'carol'");
      const report = await auditSaga(tx, { baseline, topUps });
      const text = report.violations.join("\n");
      expect(text).toMatch(/wallets that do not balance.*alice/);
      expect(text).toMatch(/products whose stock does not add up.*E2E-HAPPY/);
      expect(text).toMatch(/orders whose money does not match their outcome.*CONFIRMED with payment DECLINED/);
      expect(text).toMatch(/orders not terminal.*FRAUD_APPROVED/);
      expect(text).toMatch(/inconsistent order histories.*history ends at REJECTED, status is FRAUD_APPROVED/);
    } finally {
      await tx.query("ROLLBACK");
      tx.release();
    }
    expect((await auditSaga(sys.db, { baseline, topUps })).violations).toEqual([]);
  });
});
