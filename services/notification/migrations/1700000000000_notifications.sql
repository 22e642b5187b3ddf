-- Up Migration
CREATE TABLE notifications (
  notification_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Newest first without relying on timestamps' precision; also the page position.
  seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  customer_id      text NOT NULL,
  order_id         text NOT NULL,
  kind             text NOT NULL CHECK (kind IN ('order_confirmed', 'order_rejected', 'order_cancelled')),
  message          text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  -- The inbox makes a redelivered event a no-op; this catches the same outcome sent twice under different ids.
  UNIQUE (order_id, kind)
);
CREATE INDEX notifications_by_customer ON notifications (customer_id, seq DESC);

-- Down Migration
DROP TABLE notifications;
