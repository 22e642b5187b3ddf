-- Up Migration
-- Every index of a table the saga writes takes an entry for each new row (and for each
-- row version that cannot stay on its page): some of those entries had no reader.
-- seq orders a customer's orders (through orders_by_customer) and is never looked up alone;
-- as an identity column it is unique by construction.
ALTER TABLE orders DROP CONSTRAINT orders_seq_key;
-- Only orders placed with an idempotency key need its uniqueness; one placed without took a
-- NULL entry. CreateOrder's ON CONFLICT names no index, so a partial one serves it as well.
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_idempotency_key_key;
CREATE UNIQUE INDEX orders_idempotency_key ON orders (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- An order's history is read by order: that index becomes the key, the one on id alone goes.
ALTER TABLE order_history DROP CONSTRAINT order_history_pkey;
DROP INDEX order_history_by_order;
ALTER TABLE order_history ADD PRIMARY KEY (order_id, id);

-- Down Migration
ALTER TABLE order_history DROP CONSTRAINT order_history_pkey;
ALTER TABLE order_history ADD PRIMARY KEY (id);
CREATE INDEX order_history_by_order ON order_history (order_id, id);
DROP INDEX orders_idempotency_key;
ALTER TABLE orders ADD CONSTRAINT orders_customer_id_idempotency_key_key UNIQUE (customer_id, idempotency_key);
ALTER TABLE orders ADD CONSTRAINT orders_seq_key UNIQUE (seq);
