-- Up Migration
-- An AdjustStock with an idempotency key applies once per SKU and key. Adjustments made
-- without one keep NULL, which the index leaves out.
ALTER TABLE stock_adjustments ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX stock_adjustments_once ON stock_adjustments (sku, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Down Migration
DROP INDEX stock_adjustments_once;
ALTER TABLE stock_adjustments DROP COLUMN idempotency_key;
