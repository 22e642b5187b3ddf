-- Up Migration
CREATE TABLE orders (
  order_id         uuid PRIMARY KEY,
  -- Orders newest first without relying on timestamps' precision.
  seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  customer_id      text NOT NULL,
  status           text NOT NULL,
  total_minor      bigint NOT NULL CHECK (total_minor >= 0),
  currency         char(3) NOT NULL,
  status_reason    text NOT NULL DEFAULT '',
  version          bigint NOT NULL DEFAULT 1,
  idempotency_key  text,
  request_hash     bytea,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX orders_by_customer ON orders (customer_id, seq DESC);

CREATE TABLE order_items (
  order_id          uuid NOT NULL REFERENCES orders (order_id),
  line_no           int NOT NULL,
  sku               text NOT NULL,
  quantity          bigint NOT NULL CHECK (quantity > 0),
  unit_price_minor  bigint NOT NULL CHECK (unit_price_minor >= 0),
  PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_history (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_id     uuid NOT NULL REFERENCES orders (order_id),
  from_status  text NOT NULL,
  to_status    text NOT NULL,
  reason       text NOT NULL DEFAULT '',
  at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_history_by_order ON order_history (order_id, id);

-- Down Migration
DROP TABLE order_history;
DROP TABLE order_items;
DROP TABLE orders;
