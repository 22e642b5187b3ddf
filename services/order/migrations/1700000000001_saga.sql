-- Up Migration
-- Saga state beside each order: the replies it waits for, by when, how often
-- the step was sent, and for a compensation the terminal status it leads to.
ALTER TABLE orders
  ADD COLUMN awaiting        text[] NOT NULL DEFAULT '{}',
  ADD COLUMN step_started_at timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN step_deadline   timestamptz,
  ADD COLUMN step_attempts   int NOT NULL DEFAULT 1,
  ADD COLUMN compensate_to   text,
  ADD COLUMN concluded_at    timestamptz;

CREATE INDEX orders_step_deadline ON orders (step_deadline) WHERE step_deadline IS NOT NULL;

-- Down Migration
DROP INDEX orders_step_deadline;
ALTER TABLE orders DROP COLUMN awaiting, DROP COLUMN step_started_at, DROP COLUMN step_deadline,
  DROP COLUMN step_attempts, DROP COLUMN compensate_to, DROP COLUMN concluded_at;
