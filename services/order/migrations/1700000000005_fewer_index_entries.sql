-- Up Migration
-- Every index of a table the saga writes takes an entry for each new row (and for each
-- row version that cannot stay on its page): two of those entries per order had no reader.
-- seq orders a customer's orders (through orders_by_customer) and is never looked up alone;
-- as an identity column it is unique by construction.
ALTER TABLE orders DROP CONSTRAINT orders_seq_key;
-- An order's history is read by order: that index becomes the key, the one on id alone goes.
ALTER TABLE order_history DROP CONSTRAINT order_history_pkey;
DROP INDEX order_history_by_order;
ALTER TABLE order_history ADD PRIMARY KEY (order_id, id);

-- Down Migration
ALTER TABLE order_history DROP CONSTRAINT order_history_pkey;
ALTER TABLE order_history ADD PRIMARY KEY (id);
CREATE INDEX order_history_by_order ON order_history (order_id, id);
ALTER TABLE orders ADD CONSTRAINT orders_seq_key UNIQUE (seq);
