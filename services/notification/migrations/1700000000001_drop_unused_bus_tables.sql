-- Up Migration
-- The bus's outbox and inbox tables, created by earlier versions of this service. It keeps
-- neither now (its consumers are idempotent by keys of their own, and what it publishes goes
-- out after its commit): nothing reads or writes them. The search_path is this service's
-- schema alone.
DROP TABLE IF EXISTS outbox, inbox;

-- Down Migration
-- Nothing to restore: the tables held nothing this service needs.
