import { randomBytes, randomUUID } from "node:crypto";
import { create, isMessage, toBinary } from "@bufbuild/protobuf";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ChargePayment,
  ChargePaymentSchema,
  PaymentChargedSchema,
  PaymentDeclinedSchema,
  PaymentRefundedSchema,
  PaymentService,
  PaymentStatus,
  type RefundPayment,
  RefundPaymentSchema,
} from "../../gen/orderflow/payment/v1/payment_pb.js";
import { listDeadLetters } from "../platform/bus/dlq.js";
import { busHeaders, publishMessages, type OutgoingMessage } from "../platform/bus/publish.js";
import { busTestEnv, eventsIn, inRecordedTransaction, publisherInto, recordingStatements, waitFor } from "../platform/bus/testkit.js";
import { Database, surviveDroppedConnections } from "../platform/db.js";
import { errorMessage } from "../platform/errors.js";
import { createLogger } from "../platform/logger.js";
import { migrate } from "../platform/migrate.js";
import { money } from "../platform/money.js";
import { applyCommands, startCommandConsumer } from "../platform/saga-participant.js";
import { paymentApi } from "./api.js";
import { charge, chargeAll, DeclineReason, InvalidCommand, lockWalletsOf, paymentCommandHandlers, PaymentSubject, refund, refundAll } from "./saga.js";
import { indexRowsRead, statementsSent } from "../../test/support/plans.js";
import { applyFreshTopUp, listPayments, PaymentStore } from "./store.js";

process.env["LOG_LEVEL"] ??= "warn";
const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const schema = `payment_test_${process.pid}_${randomBytes(3).toString("hex")}`;

let db: Database;
let store: PaymentStore;
let api: Client<typeof PaymentService>;

beforeAll(async () => {
  const probe = surviveDroppedConnections(new pg.Pool({ connectionString: DATABASE_URL, max: 1, connectionTimeoutMillis: 3000 }));
  try {
    await probe.query("SELECT 1");
  } catch (error) {
    throw new Error(`payment tests need Postgres at ${DATABASE_URL} (set DATABASE_URL): ${errorMessage(error)}`);
  } finally {
    await probe.end();
  }
  await migrate({ databaseUrl: DATABASE_URL, service: "payment", schema, logger: createLogger("payment-test", "warn") });
  db = new Database({ url: DATABASE_URL, poolMax: 30, schema, applicationName: "payment-test" });
  store = new PaymentStore(db);
  api = createClient(PaymentService, createRouterTransport(({ service }) => service(PaymentService, paymentApi(store))));
});

afterAll(async () => {
  if (!db) return;
  await db.primary.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  await db.close();
});

const customer = (): string => `cust-${randomUUID().slice(0, 8)}`;

function chargeOf(orderId: string, customerId: string, amountMinor: bigint, currency = "USD"): ChargePayment {
  return create(ChargePaymentSchema, { orderId, customerId, amount: money(amountMinor, currency) });
}

/** Applies a command the way the bus consumer does, in one transaction; returns its reply. */
async function apply(command: ReturnType<typeof chargeOf> | ReturnType<typeof create<typeof RefundPaymentSchema>>): Promise<OutgoingMessage> {
  return db.transaction(async (tx) => {
    const [reply] = (await applyCommands(tx, paymentCommandHandlers, [command])) as OutgoingMessage[];
    if (!reply) throw new Error(`no reply to ${command.$typeName}`);
    return reply;
  });
}

const chargeNow = (orderId: string, customerId: string, amountMinor: bigint, currency = "USD"): Promise<OutgoingMessage> =>
  db.transaction((tx) => charge(tx, chargeOf(orderId, customerId, amountMinor, currency)));
const refundNow = (orderId: string): Promise<OutgoingMessage> => db.transaction((tx) => refund(tx, create(RefundPaymentSchema, { orderId })));

async function topUp(customerId: string, amountMinor: bigint, currency = "USD", key: string = randomUUID()): Promise<bigint> {
  const { wallet } = await api.topUpWallet({ customerId, amount: money(amountMinor, currency), idempotencyKey: key });
  return wallet?.balance?.amountMinor ?? -1n;
}

async function balanceOf(customerId: string): Promise<bigint> {
  const { rows } = await db.primary.query<{ balance_minor: string }>("SELECT balance_minor FROM wallets WHERE customer_id = $1", [customerId]);
  return rows[0] ? BigInt(rows[0].balance_minor) : -1n;
}

async function ledgerOf(customerId: string): Promise<Array<{ kind: string; amount: bigint }>> {
  const { rows } = await db.primary.query<{ kind: string; amount_minor: string }>("SELECT kind, amount_minor FROM ledger_entries WHERE customer_id = $1 ORDER BY id", [customerId]);
  return rows.map((r) => ({ kind: r.kind, amount: BigInt(r.amount_minor) }));
}

/** Wallets whose balance is not the sum of their ledger entries (should be none). */
async function ledgerMismatches(): Promise<Array<{ customer_id: string; balance_minor: string; ledger_minor: string }>> {
  const { rows } = await db.primary.query<{ customer_id: string; balance_minor: string; ledger_minor: string }>(
    `SELECT w.customer_id, w.balance_minor, coalesce(sum(l.amount_minor), 0) AS ledger_minor
       FROM wallets w LEFT JOIN ledger_entries l USING (customer_id)
      GROUP BY w.customer_id, w.balance_minor
     HAVING w.balance_minor <> coalesce(sum(l.amount_minor), 0)`,
  );
  return rows;
}

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

describe("wallets (RPC)", () => {
  it("GetWallet is NOT_FOUND for a customer without a wallet", async () => {
    expect((await rpcError(api.getWallet({ customerId: customer() }))).code).toBe(Code.NotFound);
  });

  it("TopUpWallet creates the wallet and applies an idempotency key once", async () => {
    const c = customer();
    expect(await topUp(c, 1000n, "USD", "k1")).toBe(1000n);
    expect(await topUp(c, 1000n, "USD", "k1")).toBe(1000n);
    expect(await topUp(c, 250n, "USD", "k2")).toBe(1250n);
    // A retry of k1 later returns the wallet as it is now.
    expect(await topUp(c, 1000n, "USD", "k1")).toBe(1250n);
    const { wallet } = await api.getWallet({ customerId: c });
    expect(wallet?.balance).toMatchObject({ amountMinor: 1250n, currency: "USD" });
    expect(await ledgerOf(c)).toEqual([
      { kind: "TOPUP", amount: 1000n },
      { kind: "TOPUP", amount: 250n },
    ]);
  });

  it("the same key with another amount is ALREADY_EXISTS; another currency is FAILED_PRECONDITION", async () => {
    const c = customer();
    await topUp(c, 500n, "USD", "k1");
    expect((await rpcError(topUp(c, 501n, "USD", "k1"))).code).toBe(Code.AlreadyExists);
    expect((await rpcError(topUp(c, 500n, "EUR", "k1"))).code).toBe(Code.AlreadyExists);
    expect((await rpcError(topUp(c, 500n, "EUR", "k2"))).code).toBe(Code.FailedPrecondition);
    expect(await balanceOf(c)).toBe(500n);
  });

  it("an amount of 0 is INVALID_ARGUMENT with a field violation, and creates no wallet", async () => {
    const c = customer();
    const error = await rpcError(topUp(c, 0n));
    expect(error.code).toBe(Code.InvalidArgument);
    const [violations] = error.findDetails(ViolationsSchema);
    expect(violations?.violations[0]?.field?.elements.map((e) => e.fieldName)).toEqual(["amount", "amount_minor"]);
    expect((await rpcError(api.getWallet({ customerId: c }))).code).toBe(Code.NotFound);
  });

  it("a fresh key is applied in one statement; a used key or another currency writes nothing in it", async () => {
    const c = customer();
    const recording = recordingStatements(db.primary);
    const first = await applyFreshTopUp(recording.db, { customerId: c, amountMinor: 300n, currency: "USD", idempotencyKey: "k1" });
    expect(first?.balance).toMatchObject({ amountMinor: 300n, currency: "USD" });
    const second = await applyFreshTopUp(recording.db, { customerId: c, amountMinor: 200n, currency: "USD", idempotencyKey: "k2" });
    expect(second?.balance).toMatchObject({ amountMinor: 500n, currency: "USD" });
    expect(recording.statements).toHaveLength(2);
    expect(await applyFreshTopUp(recording.db, { customerId: c, amountMinor: 200n, currency: "USD", idempotencyKey: "k2" })).toBeUndefined();
    expect(await applyFreshTopUp(recording.db, { customerId: c, amountMinor: 200n, currency: "EUR", idempotencyKey: "k3" })).toBeUndefined();
    expect(await balanceOf(c)).toBe(500n);
    expect(await ledgerOf(c)).toEqual([
      { kind: "TOPUP", amount: 300n },
      { kind: "TOPUP", amount: 200n },
    ]);
  });

  it("a top-up that would overflow the balance is FAILED_PRECONDITION and changes nothing", async () => {
    const c = customer();
    await topUp(c, 9_000_000_000_000_000_000n);
    expect((await rpcError(topUp(c, 1_000_000_000_000_000_000n))).code).toBe(Code.FailedPrecondition);
    expect(await balanceOf(c)).toBe(9_000_000_000_000_000_000n);
    expect(await ledgerOf(c)).toHaveLength(1);
  });

  it("concurrent top-ups with one key apply once", async () => {
    const c = customer();
    const balances = await Promise.all(Array.from({ length: 8 }, () => topUp(c, 700n, "USD", "same")));
    expect(balances.every((b) => b === 700n)).toBe(true);
    expect(await balanceOf(c)).toBe(700n);
    expect(await ledgerOf(c)).toHaveLength(1);
  });
});

describe("charge", () => {
  it("debits the wallet, records the payment and the ledger row, replies PaymentCharged keyed by order", async () => {
    const c = customer();
    await topUp(c, 10_000n);
    const orderId = randomUUID();
    const reply = await apply(chargeOf(orderId, c, 2_500n));
    expect(reply.subject).toBe(PaymentSubject.charged);
    expect(reply.key).toBe(orderId);
    expect(isMessage(reply.message, PaymentChargedSchema)).toBe(true);
    const paymentId = isMessage(reply.message, PaymentChargedSchema) ? reply.message.paymentId : "";
    expect(await balanceOf(c)).toBe(7_500n);
    expect(await ledgerOf(c)).toEqual([
      { kind: "TOPUP", amount: 10_000n },
      { kind: "CHARGE", amount: -2_500n },
    ]);
    const { payment } = await api.getPayment({ paymentId });
    expect(payment).toMatchObject({ orderId, customerId: c, status: PaymentStatus.CHARGED, amount: { amountMinor: 2_500n, currency: "USD" } });
  });

  it("a repeated charge of the order returns the recorded outcome and debits nothing", async () => {
    const c = customer();
    await topUp(c, 1_000n);
    const orderId = randomUUID();
    const first = await chargeNow(orderId, c, 400n);
    const again = await chargeNow(orderId, c, 400n);
    const otherAmount = await chargeNow(orderId, c, 999n);
    expect(again).toEqual(first);
    expect(otherAmount).toEqual(first);
    expect(await balanceOf(c)).toBe(600n);
  });

  it("5 concurrent charges of one order debit once and all reply with the same payment", async () => {
    const c = customer();
    await topUp(c, 1_000n);
    const orderId = randomUUID();
    const replies = await Promise.all(Array.from({ length: 5 }, () => chargeNow(orderId, c, 300n)));
    expect(await balanceOf(c)).toBe(700n);
    expect((await ledgerOf(c)).filter((e) => e.kind === "CHARGE")).toEqual([{ kind: "CHARGE", amount: -300n }]);
    for (const reply of replies) {
      expect(reply.subject).toBe(PaymentSubject.charged);
      expect(reply.message).toEqual(replies[0]?.message);
    }
  });

  it("insufficient funds: declined, balance unchanged, no ledger row; the order stays declined after a top-up", async () => {
    const c = customer();
    await topUp(c, 100n);
    const orderId = randomUUID();
    const reply = await chargeNow(orderId, c, 101n);
    expect(reply.subject).toBe(PaymentSubject.declined);
    expect(reply.message).toEqual(create(PaymentDeclinedSchema, { orderId, reason: DeclineReason.insufficientFunds }));
    expect(await balanceOf(c)).toBe(100n);
    await topUp(c, 1_000n);
    expect((await chargeNow(orderId, c, 101n)).subject).toBe(PaymentSubject.declined);
    expect(await balanceOf(c)).toBe(1_100n);
    expect((await ledgerOf(c)).every((e) => e.kind === "TOPUP")).toBe(true);
    const { payments } = await api.listPayments({ customerId: c });
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ orderId, status: PaymentStatus.DECLINED, declineReason: "insufficient funds" });
  });

  it("declines without a wallet and in another currency than the wallet's", async () => {
    const nobody = customer();
    const o1 = randomUUID();
    expect((await chargeNow(o1, nobody, 1n)).message).toEqual(create(PaymentDeclinedSchema, { orderId: o1, reason: DeclineReason.noWallet }));
    const c = customer();
    await topUp(c, 1_000n, "EUR");
    const o2 = randomUUID();
    expect((await chargeNow(o2, c, 1n, "USD")).message).toEqual(create(PaymentDeclinedSchema, { orderId: o2, reason: DeclineReason.currencyMismatch }));
    expect(await balanceOf(c)).toBe(1_000n);
  });

  it("throws InvalidCommand for a command that can never apply", async () => {
    const c = customer();
    await topUp(c, 1_000n);
    await expect(chargeNow("", c, 1n)).rejects.toBeInstanceOf(InvalidCommand);
    await expect(chargeNow(randomUUID(), "", 1n)).rejects.toBeInstanceOf(InvalidCommand);
    await expect(chargeNow(randomUUID(), c, -1n)).rejects.toBeInstanceOf(InvalidCommand);
    await expect(chargeNow(randomUUID(), c, 1n, "usd")).rejects.toBeInstanceOf(InvalidCommand);
    await expect(refundNow("")).rejects.toBeInstanceOf(InvalidCommand);
    expect(await balanceOf(c)).toBe(1_000n);
  });

  it("never takes a balance below zero under 50 concurrent charges of different orders", async () => {
    const c = customer();
    await topUp(c, 2_000n);
    // 50 charges of 100 against 2 000: exactly 20 can succeed.
    const replies = await Promise.all(Array.from({ length: 50 }, () => chargeNow(randomUUID(), c, 100n)));
    const charged = replies.filter((r) => r.subject === PaymentSubject.charged);
    const declined = replies.filter((r) => r.subject === PaymentSubject.declined);
    expect(charged).toHaveLength(20);
    expect(declined).toHaveLength(30);
    for (const d of declined) expect(isMessage(d.message, PaymentDeclinedSchema) && d.message.reason).toBe(DeclineReason.insufficientFunds);
    expect(await balanceOf(c)).toBe(0n);
    expect((await ledgerOf(c)).filter((e) => e.kind === "CHARGE")).toHaveLength(20);
  });

  it("a charge that waits behind a top-up's lock is decided and debited on the topped-up balance", async () => {
    const c = customer();
    await topUp(c, 500n);
    // A top-up in flight: it holds the wallet's lock and has raised the balance, uncommitted.
    const holder = await db.primary.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("UPDATE wallets SET balance_minor = balance_minor + 250 WHERE customer_id = $1", [c]);
      await holder.query("INSERT INTO ledger_entries (customer_id, kind, amount_minor, currency, idempotency_key) VALUES ($1, 'TOPUP', 250, 'USD', $2)", [c, randomUUID()]);
      const pending = chargeNow(randomUUID(), c, 600n);
      await waitFor(async () => {
        const { rows } = await db.primary.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'payment-test' AND wait_event_type = 'Lock'");
        return rows.length > 0;
      }, 5_000);
      await holder.query("COMMIT");
      // 500 alone does not cover 600; 750 does, and the debit must start from 750, not from the 500 this statement's snapshot saw.
      expect((await pending).subject).toBe(PaymentSubject.charged);
    } finally {
      holder.release();
    }
    expect(await balanceOf(c)).toBe(150n);
  });
});

describe("refund", () => {
  it("credits a charged payment back once", async () => {
    const c = customer();
    await topUp(c, 1_000n);
    const orderId = randomUUID();
    const charged = await chargeNow(orderId, c, 650n);
    const paymentId = isMessage(charged.message, PaymentChargedSchema) ? charged.message.paymentId : "";
    const replies = [await apply(create(RefundPaymentSchema, { orderId })), await apply(create(RefundPaymentSchema, { orderId }))];
    for (const reply of replies) {
      expect(reply.subject).toBe(PaymentSubject.refunded);
      expect(reply.key).toBe(orderId);
      expect(reply.message).toEqual(create(PaymentRefundedSchema, { orderId, paymentId, amount: money(650n, "USD") }));
    }
    expect(await balanceOf(c)).toBe(1_000n);
    expect(await ledgerOf(c)).toEqual([
      { kind: "TOPUP", amount: 1_000n },
      { kind: "CHARGE", amount: -650n },
      { kind: "REFUND", amount: 650n },
    ]);
    expect((await api.getPayment({ paymentId })).payment?.status).toBe(PaymentStatus.REFUNDED);
    // A charge re-sent after the refund changes nothing.
    expect((await chargeNow(orderId, c, 650n)).subject).toBe(PaymentSubject.charged);
    expect(await balanceOf(c)).toBe(1_000n);
  });

  it("concurrent refunds of one order credit once", async () => {
    const c = customer();
    await topUp(c, 1_000n);
    const orderId = randomUUID();
    await chargeNow(orderId, c, 300n);
    await Promise.all(Array.from({ length: 5 }, () => refundNow(orderId)));
    expect(await balanceOf(c)).toBe(1_000n);
    expect((await ledgerOf(c)).filter((e) => e.kind === "REFUND")).toHaveLength(1);
  });

  it("of a declined payment refunds 0", async () => {
    const c = customer();
    await topUp(c, 10n);
    const orderId = randomUUID();
    await chargeNow(orderId, c, 11n);
    const reply = await refundNow(orderId);
    expect(isMessage(reply.message, PaymentRefundedSchema) && reply.message.amount?.amountMinor).toBe(0n);
    expect(await balanceOf(c)).toBe(10n);
  });

  it("before the charge leaves a tombstone: refunds 0, and the late charge is declined as order cancelled", async () => {
    const c = customer();
    await topUp(c, 1_000n);
    const orderId = randomUUID();
    const reply = await refundNow(orderId);
    expect(reply.subject).toBe(PaymentSubject.refunded);
    expect(isMessage(reply.message, PaymentRefundedSchema) && reply.message.amount?.amountMinor).toBe(0n);
    const late = await apply(chargeOf(orderId, c, 500n));
    expect(late.subject).toBe(PaymentSubject.declined);
    expect(late.message).toEqual(create(PaymentDeclinedSchema, { orderId, reason: DeclineReason.orderCancelled }));
    expect(await balanceOf(c)).toBe(1_000n);
    expect(await ledgerOf(c)).toHaveLength(1);
    // The tombstone now names the customer, so the declined payment shows in their list.
    const { payments } = await api.listPayments({ customerId: c });
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ orderId, status: PaymentStatus.DECLINED, declineReason: "order cancelled" });
  });

  it("racing a charge of the same order leaves the wallet as it was", async () => {
    for (let i = 0; i < 10; i++) {
      const c = customer();
      await topUp(c, 1_000n);
      const orderId = randomUUID();
      await Promise.all([chargeNow(orderId, c, 400n), refundNow(orderId), chargeNow(orderId, c, 400n)]);
      expect(await balanceOf(c)).toBe(1_000n);
    }
  });
});

describe("batches", () => {
  it("concurrent batch transactions sharing wallets do not deadlock: charges with refunds lock their wallets first, charges alone in chargeAll", async () => {
    const customers = Array.from({ length: 8 }, customer);
    for (const c of customers) await topUp(c, 10_000n);
    const charged = Array.from({ length: 40 }, (_, i) => chargeOf(randomUUID(), customers[i % customers.length]!, 10n));
    for (const command of charged) await chargeNow(command.orderId, command.customerId, 10n);
    // Batches 0-5: charges of new orders and refunds of charged ones; 6-9: charges only. All over the same wallets in different orders.
    const batches = Array.from({ length: 10 }, (_, b) => {
      const commands: Array<ChargePayment | ReturnType<typeof create<typeof RefundPaymentSchema>>> = [];
      for (let i = 0; i < 30; i++) {
        const c = customers[(b % 2 === 0 ? i : customers.length * 4 - i) % customers.length]!;
        commands.push(i % 5 === 0 && b < 6 ? create(RefundPaymentSchema, { orderId: charged[(b * 7 + i) % charged.length]!.orderId }) : chargeOf(randomUUID(), c, 10n));
      }
      return commands;
    });
    await Promise.all(
      batches.map((commands) =>
        db.transaction(async (tx) => {
          await lockWalletsOf(tx, commands);
          await applyCommands(tx, paymentCommandHandlers, commands);
        }),
      ),
    );
    expect(await ledgerMismatches()).toEqual([]);
  });

  it("a batch with refunds locks each of its wallets; one of charges only leaves the locks to chargeAll", async () => {
    const [a, b, refunded] = [customer(), customer(), customer()];
    for (const c of [a, b, refunded]) await topUp(c, 1_000n);
    const earlier = chargeOf(randomUUID(), refunded, 10n);
    await chargeNow(earlier.orderId, refunded, 10n);
    const lockedBy = async (commands: Parameters<typeof lockWalletsOf>[1]): Promise<string[]> => {
      const held = await db.primary.connect();
      const probe = await db.primary.connect();
      try {
        await held.query("BEGIN");
        await lockWalletsOf(held, commands);
        const locked: string[] = [];
        for (const c of [a, b, refunded]) {
          const taken = await probe.query("SELECT 1 FROM wallets WHERE customer_id = $1 FOR UPDATE NOWAIT", [c]).then(
            () => false,
            () => true,
          );
          if (taken) locked.push(c);
        }
        return locked;
      } finally {
        await held.query("ROLLBACK");
        held.release();
        probe.release();
      }
    };
    expect(await lockedBy([chargeOf(randomUUID(), a, 10n), chargeOf(randomUUID(), b, 10n), chargeOf(randomUUID(), a, 10n)])).toEqual([]);
    expect(await lockedBy([chargeOf(randomUUID(), a, 10n), create(RefundPaymentSchema, { orderId: earlier.orderId })])).toEqual([a, refunded]);
  });

  it("a batch of one command takes no wallet lock before its handler (one round trip less)", async () => {
    const c = customer();
    await topUp(c, 100n);
    const recording = recordingStatements(db.primary);
    await lockWalletsOf(recording.db, [chargeOf(randomUUID(), c, 10n)]);
    await lockWalletsOf(recording.db, [create(RefundPaymentSchema, { orderId: randomUUID() })]);
    expect(recording.statements).toEqual([]);
    await lockWalletsOf(recording.db, [chargeOf(randomUUID(), c, 10n), create(RefundPaymentSchema, { orderId: randomUUID() })]);
    expect(recording.statements).toHaveLength(1);
  });
});

describe("a batch's charges together (chargeAll)", () => {
  /** What a reply says, without its generated payment id. */
  const outcome = (reply: OutgoingMessage): string =>
    isMessage(reply.message, PaymentDeclinedSchema) ? `declined: ${reply.message.reason}` : `${reply.subject} ${reply.key === "" ? "" : "for its order"}`;

  /** A fresh set of customers: A with 1,000 USD, B without a wallet, C with 500 EUR, D with 100 USD. */
  async function customers(): Promise<{ a: string; b: string; c: string; d: string }> {
    const set = { a: customer(), b: customer(), c: customer(), d: customer() };
    await topUp(set.a, 1_000n);
    await topUp(set.c, 500n, "EUR");
    await topUp(set.d, 100n);
    return set;
  }

  /** Orders for one set of customers, in batch order; `paid` was charged before (a re-sent command). */
  function commandsFor(set: { a: string; b: string; c: string; d: string }, paid: string): ChargePayment[] {
    const a1 = randomUUID();
    return [
      chargeOf(a1, set.a, 400n),
      chargeOf(randomUUID(), set.a, 700n), // 600 left: insufficient
      chargeOf(randomUUID(), set.b, 10n), // no wallet
      chargeOf(paid, set.d, 999n), // re-sent with another amount: the recorded outcome
      chargeOf(randomUUID(), set.a, 300n),
      chargeOf(a1, set.a, 400n), // twice in one batch: debited once
      chargeOf(randomUUID(), set.c, 10n), // EUR wallet
      chargeOf(randomUUID(), set.a, 200n), // 300 left after the 300
      chargeOf(randomUUID(), set.d, 0n), // nothing to debit
      chargeOf(randomUUID(), set.a, 300n), // 100 left: insufficient
    ];
  }

  it("gives each charge the outcome it gets one after another, and leaves the same balances and ledger", async () => {
    const batch = await customers();
    const oneByOne = await customers();
    const paidBatch = randomUUID();
    const paidOne = randomUUID();
    await chargeNow(paidBatch, batch.d, 50n);
    await chargeNow(paidOne, oneByOne.d, 50n);

    const together = await db.transaction(async (tx) => {
      const commands = commandsFor(batch, paidBatch);
      await lockWalletsOf(tx, commands);
      return chargeAll(tx, commands);
    });
    const separately: OutgoingMessage[] = [];
    for (const command of commandsFor(oneByOne, paidOne)) separately.push(await db.transaction((tx) => charge(tx, command)));

    expect(together.map(outcome)).toEqual(separately.map(outcome));
    expect(together.map(outcome)).toEqual([
      "payment.evt.charged for its order",
      `declined: ${DeclineReason.insufficientFunds}`,
      `declined: ${DeclineReason.noWallet}`,
      "payment.evt.charged for its order",
      "payment.evt.charged for its order",
      "payment.evt.charged for its order",
      `declined: ${DeclineReason.currencyMismatch}`,
      "payment.evt.charged for its order",
      "payment.evt.charged for its order",
      `declined: ${DeclineReason.insufficientFunds}`,
    ]);
    // The order charged twice in the batch has one payment, and both replies name it.
    expect(together[5]).toEqual(together[0]);
    for (const key of ["a", "c", "d"] as const) {
      expect(await balanceOf(batch[key])).toBe(await balanceOf(oneByOne[key]));
      expect(await ledgerOf(batch[key])).toEqual(await ledgerOf(oneByOne[key]));
    }
    expect(await balanceOf(batch.a)).toBe(100n);
    expect(await ledgerMismatches()).toEqual([]);
  });

  it("charges a batch its wallets cover in one statement, which locks the wallets", async () => {
    const [c, other] = [customer(), customer()];
    await topUp(c, 10_000n);
    await topUp(other, 300n);
    const commands = Array.from({ length: 20 }, (_, i) => (i % 10 === 9 ? chargeOf(randomUUID(), other, 150n) : chargeOf(randomUUID(), c, 100n)));
    const { result: replies, statements } = await inRecordedTransaction(db, (tx) => chargeAll(tx, commands));
    expect(statements).toHaveLength(1);
    expect(replies.map((r) => r.subject)).toEqual(Array<string>(20).fill(PaymentSubject.charged));
    expect(await balanceOf(c)).toBe(8_200n);
    expect(await balanceOf(other)).toBe(0n);
    expect(await ledgerOf(c)).toHaveLength(19);
    expect(await ledgerMismatches()).toEqual([]);

    const held = await db.primary.connect();
    try {
      await held.query("BEGIN");
      await chargeAll(held, [chargeOf(randomUUID(), c, 1n), chargeOf(randomUUID(), other, 0n)]);
      for (const wallet of [c, other]) await expect(db.primary.query("SELECT 1 FROM wallets WHERE customer_id = $1 FOR UPDATE NOWAIT", [wallet])).rejects.toThrow(/could not obtain lock/);
    } finally {
      await held.query("ROLLBACK");
      held.release();
    }
  });

  it("decides a batch one charge after another, in a second statement, when a wallet falls short", async () => {
    const c = customer();
    await topUp(c, 250n);
    const { result: replies, statements } = await inRecordedTransaction(db, (tx) => chargeAll(tx, [chargeOf(randomUUID(), c, 100n), chargeOf(randomUUID(), c, 200n), chargeOf(randomUUID(), c, 150n)]));
    expect(statements).toHaveLength(2);
    expect(replies.map(outcome)).toEqual(["payment.evt.charged for its order", `declined: ${DeclineReason.insufficientFunds}`, "payment.evt.charged for its order"]);
    expect(await balanceOf(c)).toBe(0n);
    expect(await ledgerMismatches()).toEqual([]);
  });

  it("concurrent batches over the same short wallets charge what the wallets hold, and no more", async () => {
    const [a, b] = [customer(), customer()];
    await topUp(a, 250n);
    await topUp(b, 250n);
    const batches = Array.from({ length: 6 }, (_, n) => Array.from({ length: 10 }, (_, i) => chargeOf(randomUUID(), (n + i) % 2 === 0 ? a : b, 10n)));
    const replies = (await Promise.all(batches.map((commands) => db.transaction((tx) => chargeAll(tx, commands))))).flat();
    expect(replies.filter((r) => r.subject === PaymentSubject.charged)).toHaveLength(50);
    expect(await balanceOf(a)).toBe(0n);
    expect(await balanceOf(b)).toBe(0n);
    expect(await ledgerMismatches()).toEqual([]);
  });

  it("declines a charge that meets a refund's tombstone, and charges the rest of the batch", async () => {
    const c = customer();
    await topUp(c, 1_000n);
    const cancelled = randomUUID();
    await refundNow(cancelled);
    const fresh = randomUUID();
    const replies = await db.transaction((tx) => chargeAll(tx, [chargeOf(cancelled, c, 300n), chargeOf(fresh, c, 300n)]));
    expect(replies.map(outcome)).toEqual([`declined: ${DeclineReason.orderCancelled}`, "payment.evt.charged for its order"]);
    expect(await balanceOf(c)).toBe(700n);
  });
});

describe("a batch's refunds together (refundAll)", () => {
  /** What a refund's reply says: the amount given back, and whether it names the order's payment. */
  const refundedOf = (reply: OutgoingMessage): string =>
    isMessage(reply.message, PaymentRefundedSchema) ? `refunded ${reply.message.amount?.amountMinor ?? -1n}${reply.message.paymentId === "" ? "" : " of a payment"}` : reply.subject;

  /** A customer with 1,000 USD and its orders: charged 300, charged 200, declined, charged and refunded 100, never charged. */
  async function ordersOfNewCustomer(): Promise<{ customerId: string; refunds: RefundPayment[] }> {
    const customerId = customer();
    await topUp(customerId, 1_000n);
    const [first, second, declined, refundedBefore, unseen] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    await chargeNow(first, customerId, 300n);
    await chargeNow(second, customerId, 200n);
    await chargeNow(declined, customerId, 5_000n);
    await chargeNow(refundedBefore, customerId, 100n);
    await refundNow(refundedBefore);
    const refunds = [first, declined, unseen, refundedBefore, second, first].map((orderId) => create(RefundPaymentSchema, { orderId }));
    return { customerId, refunds };
  }

  it("gives each refund the reply it gets one after another, in one statement, and leaves the same balance and ledger", async () => {
    const batch = await ordersOfNewCustomer();
    const oneByOne = await ordersOfNewCustomer();
    const { result: together, statements } = await inRecordedTransaction(
      db,
      (tx) => refundAll(tx, batch.refunds),
      (tx) => lockWalletsOf(tx, batch.refunds),
    );
    const separately: OutgoingMessage[] = [];
    for (const command of oneByOne.refunds) separately.push(await db.transaction((tx) => refund(tx, command)));

    expect(statements).toHaveLength(1);
    expect(together.map(refundedOf)).toEqual(separately.map(refundedOf));
    expect(together.map(refundedOf)).toEqual(["refunded 300 of a payment", "refunded 0 of a payment", "refunded 0 of a payment", "refunded 100 of a payment", "refunded 200 of a payment", "refunded 300 of a payment"]);
    expect(together.map((r) => r.key)).toEqual(batch.refunds.map((c) => c.orderId));
    expect(await balanceOf(batch.customerId)).toBe(1_000n);
    expect(await ledgerOf(batch.customerId)).toEqual(await ledgerOf(oneByOne.customerId));
    expect(await ledgerMismatches()).toEqual([]);
    // The order never charged has a tombstone: its late charge is declined.
    expect(await chargeNow(batch.refunds[2]!.orderId, batch.customerId, 10n).then((r) => r.subject)).toBe(PaymentSubject.declined);
  });

  it("in a batch beside charges of the same wallet, the charges find the money the refunds gave back", async () => {
    const c = customer();
    await topUp(c, 500n);
    const paid = randomUUID();
    await chargeNow(paid, c, 500n);
    const next = randomUUID();
    // In message order the charge comes first, and one after another it would be declined.
    const replies = await db.transaction(async (tx) => {
      const commands = [chargeOf(next, c, 400n), create(RefundPaymentSchema, { orderId: paid })];
      await lockWalletsOf(tx, commands);
      return applyCommands(tx, paymentCommandHandlers, commands);
    });
    expect(replies.map((r) => r?.subject)).toEqual([PaymentSubject.charged, PaymentSubject.refunded]);
    expect(await balanceOf(c)).toBe(100n);
    expect(await ledgerMismatches()).toEqual([]);
  });
});

describe("payments (RPC)", () => {
  it("GetPayment is NOT_FOUND for an unknown id", async () => {
    expect((await rpcError(api.getPayment({ paymentId: randomUUID() }))).code).toBe(Code.NotFound);
  });

  it("ListPayments pages a customer's payments newest first", async () => {
    const c = customer();
    await topUp(c, 1_000n);
    const orders = Array.from({ length: 5 }, () => randomUUID());
    for (const orderId of orders) await chargeNow(orderId, c, 10n);
    await chargeNow(randomUUID(), customer(), 10n); // someone else's
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await api.listPayments({ customerId: c, pageSize: 2, pageToken });
      seen.push(...page.payments.map((p) => p.orderId));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(pages).toBe(3);
    expect(seen).toEqual([...orders].reverse());
    expect((await rpcError(api.listPayments({ customerId: c, pageToken: "nonsense" }))).code).toBe(Code.InvalidArgument);
  });

  it("reads a page deep in a long history from its position, also on the plan kept once prepared: none of the newer payments", async () => {
    const c = customer();
    // Declined, so that the ledger owes them nothing (the ledger test checks every payment).
    await db.primary.query(
      `INSERT INTO payments (payment_id, order_id, customer_id, amount_minor, currency, status, decline_reason)
       SELECT gen_random_uuid(), gen_random_uuid()::text, $1, 0, 'USD', 'DECLINED', 'insufficient funds' FROM generate_series(1, 2000)`,
      [c],
    );
    const oldest = await db.primary.query<{ seq: string }>("SELECT seq FROM payments WHERE customer_id = $1 ORDER BY seq LIMIT 11", [c]);
    const before = oldest.rows[10]!.seq;
    let page: Awaited<ReturnType<typeof listPayments>> = [];
    const [statement] = await statementsSent(db.replica, async () => (page = await listPayments(db.replica, c, 5, before)));
    expect(page.map((p) => p.seq)).toEqual(oldest.rows.slice(5, 10).map((r) => r.seq).reverse());
    // The 10 payments older than the position at most; none of the 1,990 newer ones.
    expect(await indexRowsRead(db.replica, statement!, "payments_by_customer")).toBeLessThanOrEqual(10);
  });
});

describe("ledger", () => {
  it("balance = sum of ledger amounts for every wallet after a mix of operations", async () => {
    const customers = Array.from({ length: 6 }, customer);
    for (const c of customers) await topUp(c, 5_000n);
    const ops: Array<Promise<unknown>> = [];
    const orders: string[] = [];
    for (let i = 0; i < 120; i++) {
      const c = customers[i % customers.length]!;
      const orderId = randomUUID();
      orders.push(orderId);
      ops.push(chargeNow(orderId, c, BigInt(100 + ((i * 37) % 900))));
      if (i % 4 === 0) ops.push(refundNow(orderId));
      if (i % 5 === 0) ops.push(chargeNow(orderId, c, 1n)); // duplicate, different amount: no effect
      if (i % 7 === 0) ops.push(topUp(c, 250n));
      if (i % 11 === 0) ops.push(refundNow(randomUUID())); // tombstone only
    }
    await Promise.all(ops);
    for (const orderId of orders.filter((_, i) => i % 3 === 0)) await refundNow(orderId);
    expect(await ledgerMismatches()).toEqual([]);
    const { rows } = await db.primary.query<{ n: string }>("SELECT count(*) AS n FROM wallets WHERE balance_minor < 0");
    expect(rows[0]?.n).toBe("0");
    // No payment was charged or refunded twice.
    const twice = await db.primary.query("SELECT payment_id, kind FROM ledger_entries WHERE payment_id IS NOT NULL GROUP BY payment_id, kind HAVING count(*) > 1");
    expect(twice.rows).toEqual([]);
    // Every CHARGED / REFUNDED payment has exactly the ledger rows its status implies.
    const inconsistent = await db.primary.query(
      `SELECT p.payment_id FROM payments p
        WHERE (p.status IN ('CHARGED', 'REFUNDED') AND p.amount_minor > 0) <> EXISTS (SELECT 1 FROM ledger_entries l WHERE l.payment_id = p.payment_id AND l.kind = 'CHARGE' AND l.amount_minor = -p.amount_minor)
           OR (p.status = 'REFUNDED' AND p.amount_minor > 0) <> EXISTS (SELECT 1 FROM ledger_entries l WHERE l.payment_id = p.payment_id AND l.kind = 'REFUND' AND l.amount_minor = p.amount_minor)`,
    );
    expect(inconsistent.rows).toEqual([]);
  });
});

describe("over JetStream with the participant's command consumer", () => {
  it("applies each command once by its order, replies to every delivery, and dead-letters a malformed command", async () => {
    const env = await busTestEnv(["payment"], null, { commandStreams: ["payment"] });
    const domain = env.domain("payment");
    const consumer = await startCommandConsumer({
      js: env.js,
      pool: db.primary,
      publisher: publisherInto(env, "payment"),
      schema,
      domain,
      handlers: paymentCommandHandlers,
      beforeBatch: lockWalletsOf,
      consumer: { dlq: env.dlq, maxDeliver: 2, backoffMs: [20] },
    });
    try {
      const c = customer();
      await topUp(c, 1_000n);
      const orderId = randomUUID();
      const cmd = (verb: string, id: string, message: OutgoingMessage["message"]): OutgoingMessage => ({ subject: `${domain}.cmd.${verb}`, id, key: orderId, message });
      await publishMessages(env.js, [
        cmd("charge", `${orderId}:charge:1`, chargeOf(orderId, c, 300n)),
        // The orchestrator's re-send after a deadline: a new message id, the same order.
        cmd("charge", `${orderId}:charge:2`, chargeOf(orderId, c, 300n)),
      ]);
      // An outbox row re-published after JetStream's duplicate window: a new Nats-Msg-Id, the same of-id
      // (handled again: the charge is keyed by its order; its reply is the first one's, which JetStream
      // drops unless the replies travel in different bundles — the order service ignores a duplicate).
      await env.js.publish(`${domain}.cmd.charge`, toBinary(ChargePaymentSchema, chargeOf(orderId, c, 300n)), {
        msgID: `${orderId}:republish`,
        headers: busHeaders({ type: ChargePaymentSchema.typeName, id: `${orderId}:charge:1`, key: orderId }),
      });
      await publishMessages(env.js, [cmd("refund", `${orderId}:refund:1`, create(RefundPaymentSchema, { orderId }))]);
      // A command that can never apply: no order id.
      await publishMessages(env.js, [{ subject: `${domain}.cmd.charge`, id: `poison-${orderId}`, message: chargeOf("", c, 1n) }]);

      const replies = async (): Promise<string[]> =>
        (await eventsIn(env.jsm, env.stream("payment"))).filter((r) => r.key === orderId).map((r) => r.subject.slice(domain.length + 1));
      await waitFor(async () => (await replies()).length >= 3, 10_000, "three replies");
      await waitFor(async () => (await listDeadLetters(env.jsm, { dlq: env.dlq })).length >= 1, 10_000, "the malformed command in the DLQ");
      const got = await replies();
      expect(got.length === 3 || got.length === 4).toBe(true);
      expect(got).toEqual([...got.slice(0, -1).map(() => "evt.charged"), "evt.refunded"]);
      expect(await balanceOf(c)).toBe(1_000n);
      expect((await ledgerOf(c)).map((e) => e.kind)).toEqual(["TOPUP", "CHARGE", "REFUND"]);
      const [dead] = await listDeadLetters(env.jsm, { dlq: env.dlq });
      expect(dead?.error).toMatch(/without order_id/);
    } finally {
      await consumer.stop();
      await env.cleanup();
    }
  }, 30_000);
});
