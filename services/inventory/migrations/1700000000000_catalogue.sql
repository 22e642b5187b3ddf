-- Up Migration
CREATE TABLE products (
  sku          text PRIMARY KEY,
  name         text NOT NULL,
  description  text NOT NULL DEFAULT '',
  price_minor  bigint NOT NULL CHECK (price_minor >= 0),
  currency     char(3) NOT NULL,
  available    bigint NOT NULL CHECK (available >= 0),
  reserved     bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  sold         bigint NOT NULL DEFAULT 0 CHECK (sold >= 0),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Every change of available stock that did not come from an order.
CREATE TABLE stock_adjustments (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sku         text NOT NULL REFERENCES products (sku),
  delta       bigint NOT NULL,
  reason      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE stock_adjustments;
DROP TABLE products;
