-- Up Migration
-- Every index of a table the saga writes takes an entry for each new row: three of those
-- entries per charge had no reader.
-- seq orders a customer's payments (through payments_by_customer) and is never looked up
-- alone; as an identity column it is unique by construction.
ALTER TABLE payments DROP CONSTRAINT payments_seq_key;
-- Only top-ups carry a client's idempotency key: charges and refunds take no entry.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_customer_id_idempotency_key_key;
CREATE UNIQUE INDEX ledger_entries_topup_once ON ledger_entries (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- A wallet's entries are read by customer: that index becomes the key, the one on id alone goes.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_pkey;
DROP INDEX ledger_entries_by_customer;
ALTER TABLE ledger_entries ADD PRIMARY KEY (customer_id, id);

-- Down Migration
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_pkey;
ALTER TABLE ledger_entries ADD PRIMARY KEY (id);
CREATE INDEX ledger_entries_by_customer ON ledger_entries (customer_id, id);
DROP INDEX ledger_entries_topup_once;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_customer_id_idempotency_key_key UNIQUE (customer_id, idempotency_key);
ALTER TABLE payments ADD CONSTRAINT payments_seq_key UNIQUE (seq);
