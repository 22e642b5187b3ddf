-- Up Migration
-- seq orders a customer's notifications (through notifications_by_customer) and is never
-- looked up alone; as an identity column it is unique by construction, and its own index
-- cost an entry for every notification written.
ALTER TABLE notifications DROP CONSTRAINT notifications_seq_key;

-- Down Migration
ALTER TABLE notifications ADD CONSTRAINT notifications_seq_key UNIQUE (seq);
