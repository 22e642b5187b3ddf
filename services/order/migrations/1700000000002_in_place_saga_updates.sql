-- Up Migration
-- The saga rewrites an order's row at every step. Postgres can do that in place
-- (a heap-only tuple update: no new entry in any of the table's five indexes) when
-- no indexed column changes and the page has room. step_deadline changes at every
-- step, so the deadline sweep no longer indexes it: it finds open steps through
-- in_flight, which flips only when the first step starts and the last one ends.
-- Adding a stored column rewrites the table under an exclusive lock: on a large
-- orders table, apply this release in a quiet window.
ALTER TABLE orders ADD COLUMN in_flight boolean GENERATED ALWAYS AS (step_deadline IS NOT NULL) STORED;
CREATE INDEX orders_in_flight ON orders (order_id) WHERE in_flight;
DROP INDEX orders_step_deadline;
-- Room on each page for the row's next versions.
ALTER TABLE orders SET (fillfactor = 70);

-- Down Migration
ALTER TABLE orders RESET (fillfactor);
CREATE INDEX orders_step_deadline ON orders (step_deadline) WHERE step_deadline IS NOT NULL;
DROP INDEX orders_in_flight;
ALTER TABLE orders DROP COLUMN in_flight;
