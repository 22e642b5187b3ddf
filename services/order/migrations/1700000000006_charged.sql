-- Up Migration
-- The charge runs side by side with the fraud check and the stock reservation: payment may
-- take the money while the order still awaits the others, and the answer that completes the
-- order must know it (and a failure must refund it). False for every order placed before:
-- their charge starts once the stock is held, and its answer confirms them at once.
ALTER TABLE orders ADD COLUMN charged boolean NOT NULL DEFAULT false;

-- Down Migration
ALTER TABLE orders DROP COLUMN charged;
