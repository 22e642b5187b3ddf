-- Up Migration
-- ListOrders asking only for statuses of an order still in flight (PENDING, FRAUD_APPROVED,
-- STOCK_RESERVED, CANCELLING) reads the customer's orders in flight, not every order the
-- customer has had. That is right because an order in such a status is always in flight:
-- the saga concludes an order in the write that ends its last step, and the check holds it
-- to that. in_flight flips only when an order is placed and when it concludes, so keying its
-- index by customer leaves the saga's other steps heap-only updates; the deadline sweep and
-- the admission count read the whole index as they read the one it replaces.
-- The check reads every order under an exclusive lock: on a large orders table, apply this
-- release in a quiet window.
ALTER TABLE orders ADD CONSTRAINT orders_open_while_in_flight CHECK (in_flight OR status IN ('CONFIRMED', 'REJECTED', 'CANCELLED'));
CREATE INDEX orders_in_flight_by_customer ON orders (customer_id, seq DESC) WHERE in_flight;
DROP INDEX orders_in_flight;

-- Down Migration
CREATE INDEX orders_in_flight ON orders (order_id) WHERE in_flight;
DROP INDEX orders_in_flight_by_customer;
ALTER TABLE orders DROP CONSTRAINT orders_open_while_in_flight;
