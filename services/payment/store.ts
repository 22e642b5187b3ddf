import { create } from "@bufbuild/protobuf";
import { type Payment, PaymentSchema, PaymentStatus, type Wallet, WalletSchema } from "../../gen/orderflow/payment/v1/payment_pb.js";
import { type Database, prepared, type Queryable } from "../platform/db.js";
import { money } from "../platform/money.js";
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
 * A fresh key is applied in one statement (`applyFreshTopUp`); a key used before, another
 * currency, or a race with the same key falls back to the transaction that tells them apart.
 */
export async function topUpWallet(db: Database, topUp: TopUp): Promise<{ wallet: Wallet; applied: boolean }> {
  const { customerId, amountMinor, currency } = topUp;
  if (amountMinor <= 0n) throw new RangeError("a top-up must be positive");
  let result: { wallet: Wallet; applied: boolean };
  try {
    const applied = await applyFreshTopUp(db.primary, topUp).catch((error: unknown) => {
      // The same key committed by a concurrent call: the transaction below finds it.
      if (errorCode(error) === "23505") return undefined;
      throw error;
    });
    result = applied ? { wallet: applied, applied: true } : await topUpInTransaction(db, topUp);
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

/** The top-up statement by statement: tells a replay from a conflicting key and another currency. */
export async function topUpInTransaction(db: Database, topUp: TopUp): Promise<{ wallet: Wallet; applied: boolean }> {
  const { customerId, amountMinor, currency, idempotencyKey } = topUp;
  return db.transaction(async (tx) => {
    await tx.query(prepared("INSERT INTO wallets (customer_id, currency) VALUES ($1, $2) ON CONFLICT (customer_id) DO NOTHING", [customerId, currency]));
    const locked = await tx.query<WalletRow>(prepared(`SELECT ${walletColumns} FROM wallets WHERE customer_id = $1 FOR UPDATE`, [customerId]));
    const wallet = locked.rows[0]!;
    const prior = await tx.query<{ amount_minor: string; currency: string }>(
      prepared("SELECT amount_minor, currency FROM ledger_entries WHERE customer_id = $1 AND idempotency_key = $2", [customerId, idempotencyKey]),
    );
    const previous = prior.rows[0];
    if (previous) {
      if (BigInt(previous.amount_minor) !== amountMinor || previous.currency !== currency) {
        throw new TopUpConflict(`idempotency key ${idempotencyKey} was already used for a top-up of ${previous.amount_minor} ${previous.currency}`);
      }
      return { wallet: toWallet(wallet), applied: false };
    }
    if (wallet.currency !== currency) throw new CurrencyMismatch(`the wallet of ${customerId} holds ${wallet.currency}, not ${currency}`);
    const updated = await tx.query<WalletRow>(
      prepared(`UPDATE wallets SET balance_minor = balance_minor + $2, updated_at = now() WHERE customer_id = $1 RETURNING ${walletColumns}`, [customerId, amountMinor.toString()]),
    );
    await tx.query(
      prepared("INSERT INTO ledger_entries (customer_id, kind, amount_minor, currency, idempotency_key) VALUES ($1, 'TOPUP', $2, $3, $4)", [
        customerId,
        amountMinor.toString(),
        currency,
        idempotencyKey,
      ]),
    );
    return { wallet: toWallet(updated.rows[0]!), applied: true };
  });
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
    `SELECT ${paymentColumns} FROM payments WHERE customer_id = $1 AND ($2::bigint IS NULL OR seq < $2::bigint) ORDER BY seq DESC LIMIT $3`,
    [customerId, beforeSeq ?? null, limit],
  );
  return rows.map((row) => ({ payment: toPayment(row), seq: row.seq }));
}
