/**
 * The saga under bad delivery, against the real services on their own NATS:
 * commands delivered twice, outbox rows published twice, poison messages and
 * a handler that keeps failing — dead-lettered, fixed, replayed.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, fromBinary } from "@bufbuild/protobuf";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { ReserveStockSchema } from "../../gen/orderflow/inventory/v1/saga_pb.js";
import { OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { ChargePaymentSchema } from "../../gen/orderflow/payment/v1/payment_pb.js";
import { commandConsumerName, commandStreamName, Header, listDeadLetters, publishMessages } from "../../services/platform/bus/index.js";
import { repoRoot } from "../../tools/system.js";
import { auditSaga, formatAudit, snapshotStock, type StockBaseline } from "../support/saga-audit.js";
import { addProduct, eventually, type SagaSystem, startSagaSystem, stockOf, waitBusQuiet, waitTerminal, fundInto } from "../support/saga-system.js";

const run = promisify(execFile);
let sys: SagaSystem;
let baseline: StockBaseline;
const topUps = new Map<string, bigint>();

const fund = fundInto(() => sys, topUps);

/** Everything an effect could change for one order, to compare before and after a duplicate. */
async function effectsOf(orderId: string, customerId: string, sku: string): Promise<unknown> {
  const q = async (sql: string, params: unknown[]) => (await sys.db.query(sql, params)).rows;
  return {
    order: await q("SELECT status, version, awaiting FROM orders.orders WHERE order_id = $1", [orderId]),
    history: await q("SELECT from_status, to_status FROM orders.order_history WHERE order_id = $1 ORDER BY id", [orderId]),
    payments: await q("SELECT payment_id, status, amount_minor FROM payment.payments WHERE order_id = $1", [orderId]),
    ledger: await q("SELECT kind, amount_minor FROM payment.ledger_entries WHERE order_id = $1 ORDER BY id", [orderId]),
    wallet: await q("SELECT balance_minor FROM payment.wallets WHERE customer_id = $1", [customerId]),
    reservation: await q("SELECT status FROM inventory.reservations WHERE order_id = $1", [orderId]),
    stock: await stockOf(sys, sku),
    notifications: await q("SELECT kind FROM notification.notifications WHERE order_id = $1", [orderId]),
  };
}

/** The participant has handled (and acknowledged) the message at stream sequence `seq` and every one before it. */
async function handled(domain: "inventory" | "payment", seq: number): Promise<boolean> {
  return (await sys.jsm.consumers.info(commandStreamName(domain), commandConsumerName(domain))).ack_floor.stream_seq >= seq;
}

async function placeConfirmed(customerId: string, sku: string, quantity: bigint): Promise<string> {
  const { order } = await sys.order.createOrder({ customerId, items: [{ sku, quantity }] });
  if (!order) throw new Error("no order");
  expect(await waitTerminal(sys, order.orderId)).toBe("CONFIRMED");
  await eventually(async () => (await sys.db.query("SELECT 1 FROM inventory.reservations WHERE order_id = $1 AND status = 'COMMITTED'", [order.orderId])).rowCount === 1, 10_000, "stock committed");
  return order.orderId;
}

beforeAll(async () => {
  sys = await startSagaSystem({
    name: "delivery",
    // Long step deadline: the dead-letter scenario keeps a charge failing for ~40 s
    // (5 deliveries with backoff 0.5/2/8/30 s) and the order must still be waiting for it.
    // Published outbox rows are kept: one is published again below.
    serviceEnv: { order: { SAGA_STEP_TIMEOUT_MS: "120000", OUTBOX_RETENTION_MS: "3600000" } },
  });
  await addProduct(sys, "E2E-DUP", 1_500n, 100n);
  await addProduct(sys, "E2E-DLQ", 2_000n, 100n);
  await addProduct(sys, "E2E-OVT", 2_500n, 10n);
  baseline = await snapshotStock(sys.db);
}, 120_000);

beforeEach((context) => {
  const mark = sys.logs.size;
  context.onTestFailed(() => sys.test.printLogs(`"${context.task.name}" failed`, mark));
});

afterEach(async () => {
  // A test that stops a service and fails half-way must not take the next tests down with it.
  for (const s of sys.system.services) if (!s.running) await sys.system.restart(s.name);
}, 60_000);

afterAll(async () => {
  await sys?.stop();
}, 60_000);

describe("saga delivery guarantees", () => {
  test("the same command delivered twice (new message ids) has one effect", async () => {
    await fund("frank", 100_000n);
    const orderId = await placeConfirmed("frank", "E2E-DUP", 2n);
    await waitBusQuiet(sys, 15_000);
    const before = await effectsOf(orderId, "frank", "E2E-DUP");

    // What the orchestrator does when it re-sends a step, and what a second
    // publisher would do: the same command under a fresh Nats-Msg-Id, so JetStream's
    // de-duplication does not stop it; the participants key their effects by order
    // id. The charge even names another amount.
    const reserveId = `dup-reserve-${randomUUID()}`;
    const chargeId = `dup-charge-${randomUUID()}`;
    const [reserveAck, chargeAck, secondChargeAck] = await publishMessages(sys.js, [
      { subject: "inventory.cmd.reserve", key: orderId, id: reserveId, message: create(ReserveStockSchema, { orderId, lines: [{ sku: "E2E-DUP", quantity: 2n }] }) },
      { subject: "payment.cmd.charge", key: orderId, id: chargeId, message: create(ChargePaymentSchema, { orderId, customerId: "frank", amount: { amountMinor: 3_000n, currency: "USD" } }) },
      { subject: "payment.cmd.charge", key: orderId, id: `${chargeId}-b`, message: create(ChargePaymentSchema, { orderId, customerId: "frank", amount: { amountMinor: 9_999n, currency: "USD" } }) },
    ]);
    await eventually(async () => (await handled("inventory", reserveAck!.seq)) && (await handled("payment", Math.max(chargeAck!.seq, secondChargeAck!.seq))), 10_000, "the duplicates to be consumed");
    // Their replies (reserved / charged again) reach the orchestrator, which ignores them.
    await waitBusQuiet(sys, 15_000);
    expect(await effectsOf(orderId, "frank", "E2E-DUP")).toEqual(before);
  });

  test("an outbox row published twice (same message id; published_at reset) has one effect", async () => {
    await fund("heidi", 100_000n);
    const orderId = await placeConfirmed("heidi", "E2E-DUP", 1n);
    await waitBusQuiet(sys, 15_000);
    const before = await effectsOf(orderId, "heidi", "E2E-DUP");
    const { rows } = await sys.db.query<{ id: string; msg_id: string; subject: string; type: string; payload: Buffer; key: string }>(
      "SELECT id, msg_id, subject, type, payload, key FROM orders.outbox WHERE key = $1 AND subject = 'payment.cmd.charge'",
      [orderId],
    );
    const row = rows[0];
    if (!row) throw new Error("no outbox row for the charge");
    // Messages stored so far: a duplicate JetStream drops takes no sequence number.
    const paymentStream = async () => (await sys.jsm.streams.info("PAYMENT_COMMANDS")).state.last_seq;
    const messagesBefore = await paymentStream();

    // 1. The relay crashed after publishing, before marking the row: it publishes the row again
    //    with the same Nats-Msg-Id. Within the duplicate window JetStream drops it.
    const h = natsHeaders();
    h.set(Header.type, row.type);
    h.set(Header.id, row.msg_id);
    h.set(Header.key, row.key);
    const ack = await sys.js.publish(row.subject, row.payload, { msgID: row.msg_id, headers: h });
    expect(ack.duplicate).toBe(true);

    // 2. The same, with published_at reset in the database: the relay itself publishes it again.
    await sys.db.query("UPDATE orders.outbox SET published_at = NULL WHERE id = $1", [row.id]);
    await eventually(
      async () => (await sys.db.query("SELECT 1 FROM orders.outbox WHERE id = $1 AND published_at IS NOT NULL", [row.id])).rowCount === 1,
      10_000,
      "the relay to publish the reset row again",
    );
    expect(await paymentStream()).toBe(messagesBefore);

    // 3. Past the duplicate window JetStream would take it: payment handles it again, and the
    //    charge, keyed by its order, changes nothing. Simulated with another Nats-Msg-Id.
    const late = await sys.js.publish(row.subject, row.payload, { msgID: `${row.msg_id}:after-window`, headers: h });
    expect(late.duplicate).toBe(false);
    await eventually(async () => handled("payment", late.seq), 10_000, "payment to consume the late copy");
    await waitBusQuiet(sys, 15_000);
    expect(await effectsOf(orderId, "heidi", "E2E-DUP")).toEqual(before);
  });

  test("a command overtaken by its compensation (delivered late, after the cancel) has no effect", async () => {
    // The contract: a refund (release) may arrive before the charge (reserve) it undoes; it leaves
    // a tombstone and the late command is refused. Made deterministic here: with the participant
    // stopped, the command is taken out of its stream (as if delayed in transit), the order is
    // cancelled, the participant restarts and handles the compensation, then the command arrives.
    // The command is in the stream once the orchestrator's outbox relay has published it.
    const takeCommand = (stream: string, subject: string, orderId: string) =>
      eventually(
        async () => {
          const { state } = await sys.jsm.streams.info(stream);
          for (let seq = state.last_seq; seq >= state.first_seq && seq > 0; seq--) {
            const m = await sys.jsm.streams.getMessage(stream, { seq }).catch(() => null);
            if (m?.subject === subject && m.header.get(Header.key) === orderId) {
              await sys.jsm.streams.deleteMessage(stream, seq);
              return m;
            }
          }
          return undefined;
        },
        10_000,
        `${subject} of ${orderId} in ${stream}`,
      );
    const deliverLate = async (m: { subject: string; data: Uint8Array; header: { get(k: string): string } }) => {
      const h = natsHeaders();
      for (const k of [Header.type, Header.id, Header.key]) h.set(k, m.header.get(k));
      return (await sys.js.publish(m.subject, m.data, { msgID: `${m.header.get(Header.id)}:late`, headers: h })).seq;
    };
    const status = async (orderId: string) => (await sys.db.query<{ status: string }>("SELECT status FROM orders.orders WHERE order_id = $1", [orderId])).rows[0]?.status;

    // Charge overtaken by the refund.
    await fund("judy", 100_000n);
    await sys.system.stopService("payment");
    const charged = (await sys.order.createOrder({ customerId: "judy", items: [{ sku: "E2E-DUP", quantity: 1n }] })).order;
    if (!charged) throw new Error("no order");
    await eventually(async () => (await status(charged.orderId)) === "STOCK_RESERVED", 10_000, "the charge to be sent");
    const charge = await takeCommand("PAYMENT_COMMANDS", "payment.cmd.charge", charged.orderId);
    await sys.order.cancelOrder({ orderId: charged.orderId, reason: "overtaken" });
    await sys.system.restart("payment");
    expect(await waitTerminal(sys, charged.orderId)).toBe("CANCELLED");
    const chargeSeq = await deliverLate(charge);
    await eventually(async () => handled("payment", chargeSeq), 10_000, "the late charge to be consumed");
    const payment = await sys.db.query("SELECT status, decline_reason FROM payment.payments WHERE order_id = $1", [charged.orderId]);
    expect(payment.rows).toEqual([{ status: "DECLINED", decline_reason: "order cancelled" }]);
    expect((await sys.db.query("SELECT 1 FROM payment.ledger_entries WHERE order_id = $1", [charged.orderId])).rowCount).toBe(0);
    expect((await sys.payment.getWallet({ customerId: "judy" })).wallet?.balance?.amountMinor).toBe(100_000n);

    // Reserve overtaken by the release. CreateOrder prices through inventory, so inventory cannot
    // simply be stopped first: a row lock on the product holds the reserve inside inventory's
    // transaction, inventory is killed there (nothing commits), the reserve is taken out of the
    // stream, the order cancelled, the lock let go and inventory started again.
    const lock = await sys.db.connect();
    let reserved: { orderId: string } | undefined;
    try {
      await lock.query("BEGIN");
      await lock.query("SELECT 1 FROM inventory.products WHERE sku = 'E2E-OVT' FOR UPDATE");
      const order = (await sys.order.createOrder({ customerId: "judy", items: [{ sku: "E2E-OVT", quantity: 2n }] })).order;
      if (!order) throw new Error("no order");
      reserved = order;
      await eventually(
        async () => (await sys.db.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM products p%'")).rowCount === 1,
        10_000,
        "the reserve to wait for the product lock",
      );
      await sys.system.kill("inventory");
      const reserve = await takeCommand("INVENTORY_COMMANDS", "inventory.cmd.reserve", order.orderId);
      await sys.order.cancelOrder({ orderId: order.orderId, reason: "overtaken" });
      await lock.query("ROLLBACK");
      await sys.system.restart("inventory");
      expect(await waitTerminal(sys, order.orderId)).toBe("CANCELLED");
      const reserveSeq = await deliverLate(reserve);
      await eventually(async () => handled("inventory", reserveSeq), 10_000, "the late reserve to be consumed");
    } finally {
      await lock.query("ROLLBACK").catch(() => undefined);
      lock.release();
    }
    const reservation = await sys.db.query("SELECT status FROM inventory.reservations WHERE order_id = $1", [reserved.orderId]);
    expect(reservation.rows).toEqual([{ status: "RELEASED" }]);
    expect((await sys.db.query("SELECT 1 FROM inventory.reservation_lines WHERE order_id = $1", [reserved.orderId])).rowCount).toBe(0);
    expect(await stockOf(sys, "E2E-OVT")).toEqual({ available: 10n, reserved: 0n, sold: 0n });
    // The charge sent alongside the reserve was refunded with the cancel (or refused, had the refund overtaken it too).
    const { rows: money } = await sys.db.query<{ status: string }>("SELECT status FROM payment.payments WHERE order_id = $1", [reserved.orderId]);
    expect([["REFUNDED"], ["DECLINED"]]).toContainEqual(money.map((r) => r.status));
    const { rows: net } = await sys.db.query<{ net: string | null }>("SELECT sum(amount_minor)::text AS net FROM payment.ledger_entries WHERE order_id = $1", [reserved.orderId]);
    expect(net[0]?.net ?? "0").toBe("0");
  });

  test("poison messages go to the DLQ with their context; the consumer carries on; replay works once the cause is fixed", async () => {
    // Realistic fix-then-replay. A ChargePayment for a customer without a wallet is not poison
    // here: payment declines it ("no wallet") by contract and the order is REJECTED — a business
    // outcome, the same however often it is replayed. What fails in the handler is a fault of the
    // environment that outlasts the retries; a database guard rejecting one customer's payment
    // rows stands for it (think of a bad migration or a broken constraint). The command is
    // retried with backoff, dead-lettered after 5 deliveries, the order keeps waiting for its
    // charge (long step deadline), the operator removes the cause and replays with
    // `npm run dlq -- replay <id>`: the order completes, charged once.
    await fund("grace", 100_000n);
    await sys.db.query(`CREATE FUNCTION payment.e2e_fault() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.customer_id = 'grace' THEN RAISE EXCEPTION 'e2e: payment rows of grace are refused (simulated fault)'; END IF; RETURN NEW; END $$`);
    await sys.db.query("CREATE TRIGGER e2e_fault BEFORE INSERT ON payment.payments FOR EACH ROW EXECUTE FUNCTION payment.e2e_fault()");
    const stuck = (await sys.order.createOrder({ customerId: "grace", items: [{ sku: "E2E-DLQ", quantity: 3n }] })).order;
    if (!stuck) throw new Error("no order");
    const failingSince = Date.now();

    // Undecodable: garbage bytes with a valid type header, and a type nobody knows.
    const garbage = Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x07]);
    expect(() => fromBinary(ChargePaymentSchema, garbage)).toThrow();
    const poison = async (id: string, type: string, data: Uint8Array) => {
      const h = natsHeaders();
      h.set(Header.type, type);
      h.set(Header.id, id);
      h.set(Header.key, "poison-order");
      h.set("x-e2e", "kept");
      await sys.js.publish("payment.cmd.charge", data, { msgID: id, headers: h });
    };
    await poison("poison-garbage", "orderflow.payment.v1.ChargePayment", garbage);
    await poison("poison-unknown", "orderflow.payment.v1.ChargeEverything", Uint8Array.from([1, 2, 3]));

    const letters = await eventually(async () => {
      const all = await listDeadLetters(sys.jsm);
      return all.length >= 2 ? all : undefined;
    }, 10_000, "two dead letters");
    const byId = new Map(letters.map((dl) => [dl.messageId, dl]));
    for (const [id, error] of [["poison-garbage", /cannot decode orderflow\.payment\.v1\.ChargePayment/], ["poison-unknown", /unknown message type orderflow\.payment\.v1\.ChargeEverything/]] as const) {
      const dl = byId.get(id);
      expect(dl, id).toBeDefined();
      expect(dl?.subject).toBe("payment.cmd.charge");
      expect(dl?.stream).toBe("PAYMENT_COMMANDS");
      expect(dl?.consumer).toBe("payment-commands");
      expect(dl?.deliveries).toBe(1);
      expect(dl?.error).toMatch(error);
      expect(dl?.headers["x-e2e"]).toEqual(["kept"]);
      expect(dl?.headers[Header.key]).toEqual(["poison-order"]);
    }
    expect(Buffer.from(byId.get("poison-garbage")?.data ?? []).equals(Buffer.from(garbage))).toBe(true);

    // The consumer carries on: orders placed after the poison (and while grace's charge is
    // being retried) complete.
    await fund("ivan", 100_000n);
    const after = await Promise.all([1, 2, 3].map(async () => (await sys.order.createOrder({ customerId: "ivan", items: [{ sku: "E2E-DLQ", quantity: 1n }] })).order?.orderId ?? ""));
    for (const id of after) expect(await waitTerminal(sys, id)).toBe("CONFIRMED");
    expect((await sys.order.getOrder({ orderId: stuck.orderId })).order?.status).toBe(OrderStatus.STOCK_RESERVED);

    // grace's charge: dead-lettered on its 5th delivery (backoff 0.5 + 2 + 8 + 30 s).
    const dead = await eventually(async () => (await listDeadLetters(sys.jsm)).find((dl) => dl.headers[Header.key]?.[0] === stuck.orderId), 60_000, "the failing charge to be dead-lettered", 500);
    console.log(`failing charge dead-lettered after ${((Date.now() - failingSince) / 1000).toFixed(1)} s`);
    expect(dead.subject).toBe("payment.cmd.charge");
    expect(dead.type).toBe("orderflow.payment.v1.ChargePayment");
    expect(dead.deliveries).toBe(5);
    expect(dead.error).toMatch(/simulated fault/);
    expect((await sys.order.getOrder({ orderId: stuck.orderId })).order?.status).toBe(OrderStatus.STOCK_RESERVED);
    expect((await sys.db.query("SELECT 1 FROM payment.payments WHERE order_id = $1", [stuck.orderId])).rowCount).toBe(0);

    // The tool lists it ...
    const env = { ...process.env, NATS_URL: sys.natsUrl };
    const tool = join(repoRoot(), "dist", "tools", "dlq.js");
    const listed = await run(process.execPath, [tool, "list"], { env });
    expect(listed.stdout).toContain("payment.cmd.charge");
    expect(listed.stdout).toContain("simulated fault");

    // ... a replay of an undecodable letter comes straight back (its cause is in the bytes) ...
    const garbageLetter = byId.get("poison-garbage");
    if (!garbageLetter) throw new Error("no garbage letter");
    await run(process.execPath, [tool, "replay", String(garbageLetter.seq)], { env });
    await eventually(async () => (await listDeadLetters(sys.jsm)).some((dl) => dl.messageId === "poison-garbage" && dl.seq !== garbageLetter.seq), 10_000, "the garbage to be dead-lettered again");

    // ... and once the cause is fixed, the replay completes the order, charging once.
    await sys.db.query("DROP TRIGGER e2e_fault ON payment.payments");
    await sys.db.query("DROP FUNCTION payment.e2e_fault()");
    const replayed = await run(process.execPath, [tool, "replay", String(dead.seq)], { env });
    expect(replayed.stdout).toMatch(new RegExp(`${dead.seq}`));
    expect(await waitTerminal(sys, stuck.orderId, 15_000)).toBe("CONFIRMED");
    expect((await listDeadLetters(sys.jsm)).some((dl) => dl.seq === dead.seq)).toBe(false);
    const ledger = await sys.db.query<{ kind: string; amount_minor: string }>("SELECT kind, amount_minor FROM payment.ledger_entries WHERE order_id = $1", [stuck.orderId]);
    expect(ledger.rows).toEqual([{ kind: "CHARGE", amount_minor: "-6000" }]);
    expect((await sys.payment.getWallet({ customerId: "grace" })).wallet?.balance?.amountMinor).toBe(94_000n);
  }, 120_000);

  test("audit: each order terminal once, money and stock conserved", async () => {
    await waitBusQuiet(sys, 15_000);
    const report = await auditSaga(sys.db, { baseline, topUps });
    console.log(formatAudit("delivery scenarios", report));
    expect(report.violations).toEqual([]);
  });
});
