import { create, isMessage, type Message } from "@bufbuild/protobuf";
import {
  type ChargePayment,
  ChargePaymentSchema,
  PaymentChargedSchema,
  PaymentDeclinedSchema,
  PaymentRefundedSchema,
  type RefundPayment,
  RefundPaymentSchema,
} from "../../gen/orderflow/payment/v1/payment_pb.js";
import type { OutgoingMessage } from "../platform/bus/publish.js";
import { prepared, type Queryable } from "../platform/db.js";
import { timeOrderedId } from "../platform/ids.js";
import { money } from "../platform/money.js";
import { type CommandHandlers, decidedOncePerOrder, onBatch } from "../platform/saga-participant.js";
import { paymentMetrics } from "./metrics.js";
import { paymentColumns, type PaymentRow } from "./store.js";

/** Subjects of the payment saga (docs/saga-contract.md). */
export const PaymentSubject = {
  charge: "payment.cmd.charge",
  refund: "payment.cmd.refund",
  charged: "payment.evt.charged",
  declined: "payment.evt.declined",
  refunded: "payment.evt.refunded",
} as const;

/** Why a charge was declined (the `reason` of PaymentDeclined). */
export const DeclineReason = {
  insufficientFunds: "insufficient funds",
  noWallet: "no wallet",
  currencyMismatch: "currency mismatch",
  orderCancelled: "order cancelled",
} as const;
export type DeclineReason = (typeof DeclineReason)[keyof typeof DeclineReason];

/** A command that can never succeed however often it is retried (the consumer dead-letters it after its deliveries). */
export class InvalidCommand extends Error {
  override readonly name = "InvalidCommand";
}

/** The charge of an order not seen before ($1 payment id, $2 order, $3 customer, $4 amount, $5 currency, $6-$8 decline reasons). */
const chargeSql = `WITH wallet AS (
   SELECT balance_minor, currency FROM wallets WHERE customer_id = $3 FOR UPDATE
 ), decision AS (
   SELECT CASE WHEN w.currency IS NULL THEN $6
               WHEN w.currency <> $5 THEN $7
               WHEN w.balance_minor < $4::bigint THEN $8
               ELSE '' END AS reason
     FROM (SELECT 1) AS one LEFT JOIN wallet AS w ON true
 ), payment AS (
   INSERT INTO payments (payment_id, order_id, customer_id, amount_minor, currency, status, decline_reason)
   SELECT $1, $2, $3, $4::bigint, $5, CASE reason WHEN '' THEN 'CHARGED' ELSE 'DECLINED' END, reason FROM decision
   ON CONFLICT (order_id) DO NOTHING
   RETURNING ${paymentColumns}
 ), debit AS (
   UPDATE wallets SET balance_minor = wallet.balance_minor - $4::bigint, updated_at = now()
     FROM wallet
    WHERE wallets.customer_id = $3 AND $4::bigint > 0 AND EXISTS (SELECT 1 FROM payment WHERE status = 'CHARGED')
   RETURNING 1
 ), entry AS (
   INSERT INTO ledger_entries (customer_id, kind, amount_minor, currency, payment_id, order_id)
   SELECT $3, 'CHARGE', -$4::bigint, $5, payment_id, $2 FROM payment WHERE status = 'CHARGED' AND $4::bigint > 0
 )
 SELECT payment.*, (SELECT count(*) FROM debit) AS debited FROM payment`;

/**
 * payment.cmd.charge: debits the customer's wallet by the order's amount, once per
 * order, inside the caller's transaction `tx`, and returns the reply to enqueue
 * (PaymentCharged on payment.evt.charged or PaymentDeclined on payment.evt.declined,
 * key = order id). The reply is not enqueued here.
 *
 * The payment row (UNIQUE order_id) records the outcome: a repeated charge for the
 * order (a re-send, a duplicate delivery, a concurrent twin) changes nothing and
 * returns the recorded outcome again, even if it names another amount. The debit
 * runs under the wallet's row lock and only if the balance covers it (and the
 * CHECK balance_minor >= 0 stands behind that), so a balance never goes negative.
 * A tombstone left by an earlier refund declines the charge with "order cancelled".
 */
export async function charge(tx: Queryable, command: ChargePayment): Promise<OutgoingMessage> {
  const { orderId, customerId, amount, currency } = chargeTerms(command);

  // One round trip: lock the wallet, decide, record the payment and, if charged,
  // debit the wallet and write the ledger row. The unique order_id decides between
  // concurrent charges of the order (and a refund's tombstone): the loser waits for
  // the winner's commit, inserts nothing and reads the recorded outcome below.
  // The debit subtracts from the balance the lock returned, not from the row this
  // statement's snapshot saw: when a top-up or refund commits while we wait for the
  // lock, Postgres checks the CHECK constraint on the snapshot's (lower) balance
  // before it re-reads the row, and would fail a charge the new balance covers.
  // A named (prepared) statement: planning this one costs more than running it.
  const { rows: inserted } = await tx.query<PaymentRow & { debited: string }>(
    prepared(chargeSql, [timeOrderedId(), orderId, customerId, amount.toString(), currency, DeclineReason.noWallet, DeclineReason.currencyMismatch, DeclineReason.insufficientFunds]),
  );
  const payment = inserted[0];
  if (!payment) return chargeOutcome(await fillTombstone(tx, (await paymentOf(tx, orderId))!, command));

  if (payment.status === "CHARGED" && amount > 0n && payment.debited !== "1") throw new Error(`charge of order ${orderId} recorded without a debit of wallet ${customerId}`);
  return counted(payment, amount, currency);
}

/** A charge's fields, checked: throws InvalidCommand for one that can never apply. */
function chargeTerms(command: ChargePayment): { orderId: string; customerId: string; amount: bigint; currency: string } {
  const { orderId, customerId } = command;
  const amount = command.amount?.amountMinor ?? 0n;
  const currency = command.amount?.currency ?? "";
  if (orderId === "") throw new InvalidCommand("ChargePayment without order_id");
  if (customerId === "") throw new InvalidCommand(`ChargePayment of order ${orderId} without customer_id`);
  if (amount < 0n) throw new InvalidCommand(`ChargePayment of order ${orderId} with a negative amount (${amount})`);
  if (!/^[A-Z]{3}$/.test(currency)) throw new InvalidCommand(`ChargePayment of order ${orderId} with currency "${currency}" (want ISO 4217)`);
  return { orderId, customerId, amount, currency };
}

/** Counts a charge just recorded and returns its reply. */
function counted(payment: ChargeRecord, amount: bigint, currency: string): OutgoingMessage {
  if (payment.status === "DECLINED") {
    paymentMetrics.payments.inc({ outcome: "declined", reason: payment.decline_reason });
  } else {
    if (amount > 0n) paymentMetrics.moneyMoved.inc({ kind: "charge", currency }, Number(amount));
    paymentMetrics.payments.inc({ outcome: "charged", reason: "" });
  }
  return chargeOutcome(payment);
}

/**
 * A batch's charges ($1-$5, one per order, in batch order), in one statement when every
 * wallet covers them all: the wallets are locked in customer-id order, the orders with a
 * payment already are left out, and if each of the rest's wallets exists, is in its
 * currency and holds the sum of its charges, all of them are charged (none can then fall
 * short of what an earlier one left). Otherwise it writes nothing and returns the locked
 * wallets, on which the charges are decided one after another (`chargeBatchWriteSql`).
 * Either way it returns the decision and the orders that had a payment. As in `chargeSql`,
 * the debit subtracts from the locked balance, not from this statement's snapshot.
 */
const chargeBatchSql = `WITH input AS (
   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[]) AS i(payment_id, order_id, customer_id, amount_minor, currency)
 ), w AS (
   SELECT customer_id, balance_minor, currency FROM wallets WHERE customer_id IN (SELECT customer_id FROM input) ORDER BY customer_id FOR UPDATE
 ), recorded AS (
   SELECT order_id FROM payments WHERE order_id IN (SELECT order_id FROM input)
 ), fresh AS (
   SELECT * FROM input WHERE order_id NOT IN (SELECT order_id FROM recorded)
 ), due AS (
   SELECT customer_id, sum(amount_minor) AS total FROM fresh GROUP BY customer_id
 ), decision AS (
   SELECT NOT EXISTS (SELECT 1 FROM fresh f LEFT JOIN w ON w.customer_id = f.customer_id WHERE w.currency IS DISTINCT FROM f.currency)
      AND NOT EXISTS (SELECT 1 FROM due JOIN w ON w.customer_id = due.customer_id WHERE w.balance_minor < due.total) AS ok
 ), p AS (
   INSERT INTO payments (payment_id, order_id, customer_id, amount_minor, currency, status, decline_reason)
   SELECT payment_id, order_id, customer_id, amount_minor, currency, 'CHARGED', '' FROM fresh, decision WHERE decision.ok
   RETURNING payment_id, order_id, customer_id, amount_minor, currency
 ), debit AS (
   UPDATE wallets t SET balance_minor = w.balance_minor - due.total, updated_at = now()
     FROM due JOIN w ON w.customer_id = due.customer_id, decision WHERE decision.ok AND due.total > 0 AND t.customer_id = due.customer_id
 ), entry AS (
   INSERT INTO ledger_entries (customer_id, kind, amount_minor, currency, payment_id, order_id)
   SELECT customer_id, 'CHARGE', -amount_minor, currency, payment_id, order_id FROM p WHERE amount_minor > 0
 )
 SELECT 'decision' AS kind, NULL AS id, NULL AS balance, NULL AS currency, ok FROM decision
 UNION ALL
 SELECT 'wallet', customer_id, balance_minor::text, currency, NULL FROM w, decision WHERE NOT decision.ok
 UNION ALL
 SELECT 'payment', order_id, NULL, NULL, NULL FROM recorded`;

/**
 * Records a batch's payments decided one after another, debits each wallet by the sum of
 * its charges and writes their ledger rows. A payment row that appeared since the wallets
 * were locked (a refund's tombstone is written without the wallet's lock) violates the
 * unique order_id and fails the batch, which the consumer then applies message by message.
 */
const chargeBatchWriteSql = `WITH p AS (
   INSERT INTO payments (payment_id, order_id, customer_id, amount_minor, currency, status, decline_reason)
   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])
   RETURNING payment_id, order_id, customer_id, amount_minor, currency, status
 ), debit AS (
   UPDATE wallets w SET balance_minor = w.balance_minor - d.total, updated_at = now()
     FROM (SELECT customer_id, sum(amount_minor) AS total FROM p WHERE status = 'CHARGED' AND amount_minor > 0 GROUP BY customer_id) d
    WHERE w.customer_id = d.customer_id
 )
 INSERT INTO ledger_entries (customer_id, kind, amount_minor, currency, payment_id, order_id)
 SELECT customer_id, 'CHARGE', -amount_minor, currency, payment_id, order_id FROM p WHERE status = 'CHARGED' AND amount_minor > 0`;

/** A charge's terms with the id its payment row gets. */
type NewPayment = ReturnType<typeof chargeTerms> & { paymentId: string };
type DecidedCharge = { record: ChargeRecord; amount: bigint; currency: string };

/**
 * payment.cmd.charge for the charges of a consumer batch, with the outcomes `charge` would
 * give them one after another. When every wallet covers its charges, one statement charges
 * them all (`chargeBatchSql`); otherwise that statement returns the locked wallets, the
 * decisions are taken here in order (an earlier charge lowers the balance a later one sees),
 * and one statement writes them. An order with a payment already (a re-sent or redelivered
 * command, a refund's tombstone), or met twice in the batch, goes through `charge` after the
 * others, which returns its recorded outcome. A batch of one is `charge`.
 */
export async function chargeAll(tx: Queryable, commands: ChargePayment[]): Promise<OutgoingMessage[]> {
  if (commands.length === 1) return [await charge(tx, commands[0]!)];
  return decidedOncePerOrder(
    commands,
    (firsts) => chargeFresh(tx, firsts),
    (command) => charge(tx, command),
  );
}

/** Charges the first command of each order of a batch (`chargeBatchSql`, then one after another if it did not charge them all); leaves out orders with a payment already. */
async function chargeFresh(tx: Queryable, firsts: ChargePayment[]): Promise<Map<string, OutgoingMessage>> {
  const terms = firsts.map((command): NewPayment => ({ ...chargeTerms(command), paymentId: timeOrderedId() }));
  const { rows } = await tx.query<{ kind: "decision" | "wallet" | "payment"; id: string | null; balance: string | null; currency: string | null; ok: boolean | null }>(
    prepared(chargeBatchSql, [
      terms.map((t) => t.paymentId),
      terms.map((t) => t.orderId),
      terms.map((t) => t.customerId),
      terms.map((t) => t.amount.toString()),
      terms.map((t) => t.currency),
    ]),
  );
  const recorded = new Set(rows.filter((r) => r.kind === "payment").map((r) => r.id!));
  const fresh = terms.filter((t) => !recorded.has(t.orderId));
  const decided = rows.find((r) => r.kind === "decision")!.ok
    ? fresh.map((t): DecidedCharge => ({ record: chargeRecord(t, ""), amount: t.amount, currency: t.currency }))
    : await decideOneAfterAnother(tx, fresh, new Map(rows.filter((r) => r.kind === "wallet").map((r) => [r.id!, { balance: BigInt(r.balance ?? "0"), currency: r.currency ?? "" }])));
  return new Map(decided.map((d) => [d.record.order_id, counted(d.record, d.amount, d.currency)]));
}

function chargeRecord(t: NewPayment, reason: string): ChargeRecord {
  return { payment_id: t.paymentId, order_id: t.orderId, status: reason === "" ? "CHARGED" : "DECLINED", decline_reason: reason };
}

/** Decides fresh charges in batch order on the locked wallets (balances lowered as it goes), and writes the decisions in one statement. */
async function decideOneAfterAnother(
  tx: Queryable,
  charges: NewPayment[],
  wallets: Map<string, { balance: bigint; currency: string }>,
): Promise<DecidedCharge[]> {
  const decided = charges.map((t): DecidedCharge & { customerId: string } => {
    const wallet = wallets.get(t.customerId);
    const reason = !wallet
      ? DeclineReason.noWallet
      : wallet.currency !== t.currency
        ? DeclineReason.currencyMismatch
        : wallet.balance < t.amount
          ? DeclineReason.insufficientFunds
          : "";
    if (wallet && reason === "") wallet.balance -= t.amount;
    return { record: chargeRecord(t, reason), customerId: t.customerId, amount: t.amount, currency: t.currency };
  });
  if (decided.length > 0) {
    const column = <T>(pick: (d: (typeof decided)[number]) => T): T[] => decided.map(pick);
    await tx.query(
      prepared(chargeBatchWriteSql, [
        column((d) => d.record.payment_id),
        column((d) => d.record.order_id),
        column((d) => d.customerId),
        column((d) => d.amount.toString()),
        column((d) => d.currency),
        column((d) => d.record.status),
        column((d) => d.record.decline_reason),
      ]),
    );
  }
  return decided;
}

/**
 * payment.cmd.refund: credits back what the order was charged, once, inside `tx`,
 * and returns PaymentRefunded on payment.evt.refunded (key = order id) with the
 * amount credited back: the charge's amount for a CHARGED or already REFUNDED
 * payment, 0 when nothing was charged. With no payment for the order yet, records
 * a tombstone (DECLINED, "order cancelled", amount 0) so a late charge is declined.
 */
export async function refund(tx: Queryable, command: RefundPayment): Promise<OutgoingMessage> {
  const orderId = refundedOrderId(command);

  let payment = await paymentOf(tx, orderId);
  if (!payment) {
    const { rows } = await tx.query<PaymentRow>(
      `INSERT INTO payments (payment_id, order_id, amount_minor, status, decline_reason)
       VALUES ($1, $2, 0, 'DECLINED', $3) ON CONFLICT (order_id) DO NOTHING RETURNING ${paymentColumns}`,
      [timeOrderedId(), orderId, DeclineReason.orderCancelled],
    );
    if (rows[0]) {
      paymentMetrics.payments.inc({ outcome: "cancelled_before_charge", reason: "" });
      return refunded(rows[0], 0n);
    }
    // A charge committed in between: refund it.
    payment = (await paymentOf(tx, orderId))!;
  }
  if (payment.status !== "CHARGED") return refundOutcome(payment);

  // Locks in the order a charge takes them, the wallet and then the payment row,
  // so a refund racing a re-sent charge of the order cannot deadlock with it.
  await tx.query(prepared("SELECT 1 FROM wallets WHERE customer_id = $1 FOR UPDATE", [payment.customer_id]));
  const { rows } = await tx.query<PaymentRow>(
    `WITH payment AS (
       UPDATE payments SET status = 'REFUNDED', updated_at = now() WHERE payment_id = $1 AND status = 'CHARGED'
       RETURNING ${paymentColumns}
     ), credit AS (
       UPDATE wallets SET balance_minor = balance_minor + payment.amount_minor, updated_at = now()
         FROM payment WHERE wallets.customer_id = payment.customer_id AND payment.amount_minor > 0
     ), entry AS (
       INSERT INTO ledger_entries (customer_id, kind, amount_minor, currency, payment_id, order_id)
       SELECT customer_id, 'REFUND', amount_minor, currency, payment_id, order_id FROM payment WHERE amount_minor > 0
     )
     SELECT * FROM payment`,
    [payment.payment_id],
  );
  // None: a concurrent refund of the order committed first.
  if (!rows[0]) return refundOutcome((await paymentOf(tx, orderId))!);
  countRefund(rows[0]);
  return refunded(rows[0], BigInt(rows[0].amount_minor));
}

/**
 * The refunds of a batch's orders ($1, with $2 a payment id for each in case it needs a
 * tombstone; $3 the tombstone's reason), in one statement: each CHARGED payment becomes
 * REFUNDED and its amount goes back to its wallet with a ledger row; an order without a
 * payment gets a tombstone (DECLINED, amount 0), so a late charge is declined. Returns
 * what it wrote (`tombstone`, `refunded`) and, as `recorded`, the payments it found
 * already settled (DECLINED or REFUNDED: final). The wallets are locked already
 * (lockWalletsOf). An order it returns nothing for — a charge or a refund of it committed
 * after this statement's snapshot — is refunded again on its own (`refund`).
 */
const refundBatchSql = `WITH input AS (
   SELECT DISTINCT ON (order_id) order_id, payment_id FROM unnest($1::text[], $2::uuid[]) AS i(order_id, payment_id)
 ), tombstone AS (
   INSERT INTO payments (payment_id, order_id, amount_minor, status, decline_reason)
   SELECT i.payment_id, i.order_id, 0, 'DECLINED', $3 FROM input i WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = i.order_id)
   ON CONFLICT (order_id) DO NOTHING
   RETURNING ${paymentColumns}
 ), refunded AS (
   UPDATE payments SET status = 'REFUNDED', updated_at = now() WHERE order_id IN (SELECT order_id FROM input) AND status = 'CHARGED'
   RETURNING ${paymentColumns}
 ), credit AS (
   UPDATE wallets w SET balance_minor = w.balance_minor + c.total, updated_at = now()
     FROM (SELECT customer_id, sum(amount_minor) AS total FROM refunded WHERE amount_minor > 0 GROUP BY customer_id) c
    WHERE w.customer_id = c.customer_id
 ), entry AS (
   INSERT INTO ledger_entries (customer_id, kind, amount_minor, currency, payment_id, order_id)
   SELECT customer_id, 'REFUND', amount_minor, currency, payment_id, order_id FROM refunded WHERE amount_minor > 0
 )
 SELECT 'tombstone' AS outcome, ${paymentColumns} FROM tombstone
 UNION ALL SELECT 'refunded', ${paymentColumns} FROM refunded
 UNION ALL SELECT 'recorded', ${paymentColumns} FROM payments WHERE order_id IN (SELECT order_id FROM input) AND status <> 'CHARGED'`;

/**
 * payment.cmd.refund for the refunds of a consumer batch, with the replies `refund` would
 * give them one after another, in one statement (see `refundBatchSql`). A batch of one is
 * `refund`, which locks its wallet itself.
 */
export async function refundAll(tx: Queryable, commands: RefundPayment[]): Promise<OutgoingMessage[]> {
  if (commands.length === 1) return [await refund(tx, commands[0]!)];
  const orderIds = commands.map(refundedOrderId);
  const { rows } = await tx.query<PaymentRow & { outcome: "tombstone" | "refunded" | "recorded" }>(
    prepared(refundBatchSql, [orderIds, orderIds.map(() => timeOrderedId()), DeclineReason.orderCancelled]),
  );
  const settled = new Map<string, OutgoingMessage>();
  for (const row of rows) {
    if (row.outcome === "tombstone") paymentMetrics.payments.inc({ outcome: "cancelled_before_charge", reason: "" });
    if (row.outcome === "refunded") countRefund(row);
    settled.set(row.order_id, row.outcome === "recorded" ? refundOutcome(row) : refunded(row, BigInt(row.amount_minor)));
  }
  const replies: OutgoingMessage[] = [];
  for (const command of commands) replies.push(settled.get(command.orderId) ?? (await refund(tx, command)));
  return replies;
}

/** The order a refund is for, checked: throws InvalidCommand for a refund without one. */
function refundedOrderId({ orderId }: RefundPayment): string {
  if (orderId === "") throw new InvalidCommand("RefundPayment without order_id");
  return orderId;
}

/** Counts a refund just written. */
function countRefund(payment: PaymentRow): void {
  const amount = Number(payment.amount_minor);
  if (amount > 0) paymentMetrics.moneyMoved.inc({ kind: "refund", currency: payment.currency ?? "" }, amount);
  paymentMetrics.payments.inc({ outcome: "refunded", reason: "" });
}

/**
 * For a batch of commands applied in one transaction: locks every wallet the batch
 * will touch, in customer-id order, before any handler runs. Two batches then take
 * their wallet locks in the same order and cannot deadlock (without it, batches of
 * several consumers deadlock as soon as they share two wallets in opposite order).
 * Refunds lock the wallet their order was charged to. A batch of charges only takes no
 * lock here: `chargeAll` locks its wallets in the same order in its first statement.
 * Nor does a batch of one command: its handler locks its one wallet itself (a refund
 * then its payment row, wallet first as everywhere), which cannot close a cycle with
 * another batch.
 */
export async function lockWalletsOf(tx: Queryable, commands: readonly Message[]): Promise<void> {
  if (commands.length < 2) return;
  const refunds = commands.filter((c) => isMessage(c, RefundPaymentSchema)).map((c) => c.orderId);
  if (refunds.length === 0) return;
  const customers = commands.filter((c) => isMessage(c, ChargePaymentSchema)).map((c) => c.customerId);
  await tx.query(prepared(lockChargedAndRefundedWallets, [customers, refunds]));
}

const lockChargedAndRefundedWallets = `SELECT 1 FROM wallets
  WHERE customer_id IN (SELECT unnest($1::text[]) UNION SELECT customer_id FROM payments WHERE order_id = ANY($2::text[]) AND customer_id IS NOT NULL)
  ORDER BY customer_id FOR UPDATE`;

/** The payment saga's command handlers by Protobuf type name, for `startParticipant`. */
export const paymentCommandHandlers: CommandHandlers = Object.fromEntries([
  // Refunds first: a batch's charges then find the money its refunds gave back.
  onBatch(RefundPaymentSchema, (tx, commands) => timed("refund", () => refundAll(tx, commands))),
  onBatch(ChargePaymentSchema, (tx, commands) => timed("charge", () => chargeAll(tx, commands))),
]);

async function timed<T>(command: string, fn: () => Promise<T>): Promise<T> {
  const end = paymentMetrics.commandSeconds.startTimer({ command });
  try {
    return await fn();
  } finally {
    end();
  }
}

async function paymentOf(tx: Queryable, orderId: string): Promise<PaymentRow | undefined> {
  const { rows } = await tx.query<PaymentRow>(prepared(`SELECT ${paymentColumns} FROM payments WHERE order_id = $1`, [orderId]));
  return rows[0];
}

/** A late charge meeting a refund's tombstone: record who and what it was for (it stays declined). */
async function fillTombstone(tx: Queryable, payment: PaymentRow, command: ChargePayment): Promise<PaymentRow> {
  if (payment.customer_id !== null) return payment;
  const { rows } = await tx.query<PaymentRow>(
    `UPDATE payments SET customer_id = $2, amount_minor = $3, currency = $4, updated_at = now()
      WHERE order_id = $1 AND customer_id IS NULL RETURNING ${paymentColumns}`,
    [command.orderId, command.customerId, (command.amount?.amountMinor ?? 0n).toString(), command.amount?.currency ?? ""],
  );
  if (!rows[0]) return (await paymentOf(tx, command.orderId))!;
  paymentMetrics.payments.inc({ outcome: "declined", reason: rows[0].decline_reason });
  return rows[0];
}

/** What a charge's reply is made of. */
type ChargeRecord = Pick<PaymentRow, "payment_id" | "order_id" | "status" | "decline_reason">;

function chargeOutcome(payment: ChargeRecord): OutgoingMessage {
  if (payment.status === "DECLINED") {
    return { subject: PaymentSubject.declined, key: payment.order_id, message: create(PaymentDeclinedSchema, { orderId: payment.order_id, reason: payment.decline_reason }) };
  }
  // REFUNDED: the charge did happen (and was undone since); the orchestrator ignores a reply its step no longer waits for.
  return { subject: PaymentSubject.charged, key: payment.order_id, message: create(PaymentChargedSchema, { orderId: payment.order_id, paymentId: payment.payment_id }) };
}

/** The reply to a refund of an order whose payment needs no (more) refunding. */
function refundOutcome(payment: PaymentRow): OutgoingMessage {
  return refunded(payment, payment.status === "REFUNDED" ? BigInt(payment.amount_minor) : 0n);
}

function refunded(payment: PaymentRow, amount: bigint): OutgoingMessage {
  return {
    subject: PaymentSubject.refunded,
    key: payment.order_id,
    message: create(PaymentRefundedSchema, { orderId: payment.order_id, paymentId: payment.payment_id, amount: money(amount, payment.currency ?? "") }),
  };
}
