-- Up Migration
-- ListOrders asking only for REJECTED and/or CANCELLED reads the customer's orders concluded
-- without being confirmed, not every order the customer has had. unconfirmed_outcome is the
-- status of such an order, NULL for every other: it changes only when in_flight does (when an
-- order concludes, or a cancel reopens a confirmed one), so indexing it costs the saga's
-- other steps no heap-only update, and its index holds only those orders.
-- Adding a stored column rewrites the table under an exclusive lock: on a large orders table,
-- apply this release in a quiet window.
ALTER TABLE orders ADD COLUMN unconfirmed_outcome text GENERATED ALWAYS AS (CASE WHEN step_deadline IS NULL AND status <> 'CONFIRMED' THEN status END) STORED;
CREATE INDEX orders_unconfirmed_by_customer ON orders (customer_id, seq DESC) WHERE unconfirmed_outcome IS NOT NULL;

-- Down Migration
DROP INDEX orders_unconfirmed_by_customer;
ALTER TABLE orders DROP COLUMN unconfirmed_outcome;
