import { create } from "@bufbuild/protobuf";
import { type Payment, PaymentSchema, PaymentStatus, type Wallet, WalletSchema } from "../../gen/orderflow/payment/v1/payment_pb.js";
import { type Database, prepared, type Queryable } from "../platform/db.js";
import { money } from "../platform/money.js";
import { beforePosition } from "../platform/paging.js";
import { errorCode } from "../platform/pgerrors.js";
import { timestamp } from "../platform/time.js";
import { paymentMetrics } from "./metrics.js";

/** Payment statuses as stored: the enum value's name. */
export type PaymentStatusName = "CHARGED" | "DECLINED" | "REFUNDED";

export interface WalletRow {
  customer_id: string;
  balance_minor: string;
  currency: string;
  updated_at: Date;
}

export interface PaymentRow {
  payment_id: string;
  seq: string;
  order_id: string;
  customer_id: string | null;
  amount_minor: string;
  currency: string | null;
  status: PaymentStatusName;
  decline_reason: string;
  created_at: Date;
  updated_at: Date;
}

export const walletColumns = "customer_id, balance_minor, currency, updated_at";
export const paymentColumns = "payment_id, seq, order_id, customer_id, amount_minor, currency, status, decline_reason, created_at, updated_at";

export function toWallet(row: WalletRow): Wallet {
  return create(WalletSchema, { customerId: row.customer_id, balance: money(row.balance_minor, row.currency), updatedAt: timestamp(row.updated_at) });
}

export function toPayment(row: PaymentRow): Payment {
  return create(PaymentSchema, {
    paymentId: row.payment_id,
    orderId: row.order_id,
    customerId: row.customer_id ?? "",
    amount: money(row.amount_minor, row.currency ?? ""),
    status: PaymentStatus[row.status],
    declineReason: row.decline_reason,
    createdAt: timestamp(row.created_at),
    updatedAt: timestamp(row.updated_at),
  });
}

/** The top-up's idempotency key was used before for a different amount or currency. */
export class TopUpConflict extends Error {}
/** The wallet holds another currency. */
export class CurrencyMismatch extends Error {}
/** The balance would leave the range of a bigint. */
export class BalanceOverflow extends Error {}

export interface TopUp {
  customerId: string;
  amountMinor: bigint;
  currency: string;
  idempotencyKey: string;
}

/**
 * Adds funds to a wallet, creating it (in the top-up's currency) on the first
 * top-up. The ledger's unique (customer, idempotency key) makes a key apply once;
 * a retry gets the wallet as it is now. Runs under the wallet's row lock, so
 * concurrent top-ups and charges of one wallet serialise.
 *
 * A fresh key is applied in one statement (`applyFreshTopUp`); when it writes nothing (a key
 * used before, another currency, a race with the same key) one read tells which.
 */
export async function topUpWallet(db: Database, topUp: TopUp): Promise<{ wallet: Wallet; applied: boolean }> {
  const { customerId, amountMinor, currency } = topUp;
  if (amountMinor <= 0n) throw new RangeError("a top-up must be positive");
  let result: { wallet: Wallet; applied: boolean };
  try {
    const applied = await applyFreshTopUp(db.primary, topUp).catch((error: unknown) => {
      // The same key committed by a concurrent call: unappliedTopUp finds it.
      if (errorCode(error) === "23505") return undefined;
      throw error;
    });
    result = applied ? { wallet: applied, applied: true } : await unappliedTopUp(db, topUp);
  } catch (error) {
    if (errorCode(error) === "22003") throw new BalanceOverflow(`a top-up of ${amountMinor} would take the balance of ${customerId} out of range`);
    throw error;
  }
  if (result.applied) paymentMetrics.moneyMoved.inc({ kind: "topup", currency }, Number(amountMinor));
  return result;
}

/**
 * The top-up in one statement, for a key not used before: the upsert creates the wallet with
 * the amount or adds it to the balance under the row's lock, and the ledger row is written
 * beside it. Nothing is written, and undefined returned, when the statement's snapshot
 * already holds the key or the wallet holds another currency. A concurrent call with the
 * same key that commits first makes the ledger insert fail (23505) and the whole statement
 * with it.
 */
export async function applyFreshTopUp(q: Queryable, topUp: TopUp): Promise<Wallet | undefined> {
  const { customerId, amountMinor, currency, idempotencyKey } = topUp;
  const { rows } = await q.query<WalletRow>(
    prepared(
      `WITH topped_up AS (
         INSERT INTO wallets AS w (customer_id, currency, balance_minor)
         SELECT $1, $3, $2::bigint
          WHERE NOT EXISTS (SELECT 1 FROM ledger_entries WHERE customer_id = $1 AND idempotency_key = $4)
         ON CONFLICT (customer_id) DO UPDATE SET balance_minor = w.balance_minor + excluded.balance_minor, updated_at = now()
          WHERE w.currency = excluded.currency
         RETURNING ${walletColumns}
       ), entry AS (
         INSERT INTO ledger_entries (customer_id, kind, amount_minor, currency, idempotency_key)
         SELECT customer_id, 'TOPUP', $2::bigint, currency, $4 FROM topped_up
       )
       SELECT ${walletColumns} FROM topped_up`,
      [customerId, amountMinor.toString(), currency, idempotencyKey],
    ),
  );
  return rows[0] && toWallet(rows[0]);
}

/**
 * Why `applyFreshTopUp` wrote nothing: the key was used before (a replay gets the wallet as it
 * is now; another amount or currency is a conflict), or the wallet holds another currency.
 * The ledger only grows and a wallet keeps its currency, so one read tells.
 */
async function unappliedTopUp(db: Database, topUp: TopUp): Promise<{ wallet: Wallet; applied: false }> {
  const { customerId, amountMinor, currency, idempotencyKey } = topUp;
  const { rows } = await db.primary.query<WalletRow & { prior_amount_minor: string | null; prior_currency: string | null }>(
    prepared(
      `SELECT w.customer_id, w.balance_minor, w.currency, w.updated_at, l.amount_minor AS prior_amount_minor, l.currency AS prior_currency
         FROM wallets w LEFT JOIN ledger_entries l ON l.customer_id = w.customer_id AND l.idempotency_key = $2
        WHERE w.customer_id = $1`,
      [customerId, idempotencyKey],
    ),
  );
  const row = rows[0];
  if (row && row.prior_amount_minor !== null) {
    if (BigInt(row.prior_amount_minor) !== amountMinor || row.prior_currency !== currency) {
      throw new TopUpConflict(`idempotency key ${idempotencyKey} was already used for a top-up of ${row.prior_amount_minor} ${row.prior_currency}`);
    }
    return { wallet: toWallet(row), applied: false };
  }
  if (row && row.currency !== currency) throw new CurrencyMismatch(`the wallet of ${customerId} holds ${row.currency}, not ${currency}`);
  throw new Error(`the top-up of ${customerId} with key ${idempotencyKey} wrote nothing, and neither its wallet nor its ledger says why`);
}

/** Wallets and payments in Postgres: queries on the replica, changes on the primary. */
export class PaymentStore {
  constructor(readonly db: Database) {}

  getWallet(customerId: string): Promise<Wallet | undefined> {
    return this.db.readFresh(async (q) => (await q.query<WalletRow>(prepared(`SELECT ${walletColumns} FROM wallets WHERE customer_id = $1`, [customerId]))).rows.map(toWallet)[0]);
  }

  topUp(topUp: TopUp): Promise<{ wallet: Wallet; applied: boolean }> {
    return topUpWallet(this.db, topUp);
  }

  getPayment(paymentId: string): Promise<Payment | undefined> {
    return this.db.readFresh(async (q) => (await q.query<PaymentRow>(prepared(`SELECT ${paymentColumns} FROM payments WHERE payment_id = $1`, [paymentId]))).rows.map(toPayment)[0]);
  }

  /** A customer's payments, newest first, before position `beforeSeq`. */
  async list(customerId: string, limit: number, beforeSeq: string | undefined): Promise<Array<{ payment: Payment; seq: string }>> {
    return listPayments(this.db.replica, customerId, limit, beforeSeq);
  }
}

export async function listPayments(q: Queryable, customerId: string, limit: number, beforeSeq: string | undefined): Promise<Array<{ payment: Payment; seq: string }>> {
  const { rows } = await q.query<PaymentRow>(
    prepared(`SELECT ${paymentColumns} FROM payments WHERE customer_id = $1 AND seq < ${beforePosition("$2::bigint")} ORDER BY seq DESC LIMIT $3`, [customerId, beforeSeq ?? null, limit]),
  );
  return rows.map((row) => ({ payment: toPayment(row), seq: row.seq }));
}
