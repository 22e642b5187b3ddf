-- Up Migration
-- One wallet per customer, in one currency. The balance never goes negative:
-- the CHECK is the last line of defence behind the row lock taken by every debit.
CREATE TABLE wallets (
  customer_id    text PRIMARY KEY,
  balance_minor  bigint NOT NULL DEFAULT 0 CHECK (balance_minor >= 0),
  currency       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One payment per order: the outcome of its charge (CHARGED or DECLINED), later
-- REFUNDED. A refund that arrives before the charge leaves a tombstone (DECLINED,
-- "order cancelled", amount 0, no customer yet) that declines the late charge.
CREATE TABLE payments (
  payment_id      uuid PRIMARY KEY,
  -- Newest first without relying on timestamps' precision.
  seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  order_id        text NOT NULL UNIQUE,
  customer_id     text,
  amount_minor    bigint NOT NULL CHECK (amount_minor >= 0),
  currency        text,
  status          text NOT NULL CHECK (status IN ('CHARGED', 'DECLINED', 'REFUNDED')),
  decline_reason  text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (status = 'DECLINED' OR (customer_id IS NOT NULL AND currency IS NOT NULL))
);
CREATE INDEX payments_by_customer ON payments (customer_id, seq DESC);

-- Every money movement, written in the same transaction as the balance change:
-- for each wallet, balance_minor = sum(amount_minor).
CREATE TABLE ledger_entries (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id      text NOT NULL REFERENCES wallets (customer_id),
  kind             text NOT NULL CHECK (kind IN ('TOPUP', 'CHARGE', 'REFUND')),
  -- Signed: + for a top-up or refund, - for a charge.
  amount_minor     bigint NOT NULL CHECK (CASE kind WHEN 'CHARGE' THEN amount_minor < 0 ELSE amount_minor > 0 END),
  currency         text NOT NULL,
  payment_id       uuid REFERENCES payments (payment_id),
  order_id         text,
  -- Top-ups only: the client's key, applied once per customer.
  idempotency_key  text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (customer_id, idempotency_key),
  CHECK ((kind = 'TOPUP') = (payment_id IS NULL)),
  CHECK (kind = 'TOPUP' OR idempotency_key IS NULL)
);
CREATE INDEX ledger_entries_by_customer ON ledger_entries (customer_id, id);
-- At most one charge and one refund per payment, whatever the code does.
CREATE UNIQUE INDEX ledger_entries_once_per_payment ON ledger_entries (payment_id, kind) WHERE payment_id IS NOT NULL;

-- Down Migration
DROP TABLE ledger_entries;
DROP TABLE payments;
DROP TABLE wallets;
