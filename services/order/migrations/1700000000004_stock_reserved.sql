-- Up Migration
-- The fraud check and the stock reservation run side by side: a reservation may succeed
-- while the order is still PENDING, and the fraud answer that follows must know it. False
-- for every order placed before (they reserve after the fraud check, as they always did).
ALTER TABLE orders ADD COLUMN stock_reserved boolean NOT NULL DEFAULT false;

-- Down Migration
ALTER TABLE orders DROP COLUMN stock_reserved;
