-- Up Migration
-- One reservation per order. A release that arrives before the reserve leaves a
-- RELEASED row with no lines, so the late reserve is refused.
CREATE TABLE reservations (
  order_id    uuid PRIMARY KEY,
  status      text NOT NULL CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED', 'FAILED')),
  reason      text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservation_lines (
  order_id  uuid NOT NULL REFERENCES reservations (order_id),
  sku       text NOT NULL REFERENCES products (sku),
  quantity  bigint NOT NULL CHECK (quantity > 0),
  PRIMARY KEY (order_id, sku)
);

-- Down Migration
DROP TABLE reservation_lines;
DROP TABLE reservations;
