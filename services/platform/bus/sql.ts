import type { Pool } from "pg";
import { transaction } from "../db.js";
import { quoteSchema } from "./names.js";

/**
 * DDL of the bus tables in a service's schema (idempotent). Include it in the service's
 * migrations, e.g. `pgm.sql(busTablesSql("inventory"))`, or call `ensureBusTables`.
 *
 * - `outbox`: rows written in the same transaction as the state change; `id` gives the
 *   publish order, `msg_id` is the Nats-Msg-Id / inbox key (globally unique). Its only index
 *   on `id` holds the unpublished rows, which is all every statement of the relay looks up
 *   (read in order, deleted or marked by id); `id` is unique by construction (an identity),
 *   and an index of every row would cost each write an entry no one reads. Tables created
 *   with one (before this DDL dropped it) lose it once, under the DDL's lock.
 * - `inbox`: one row per (consumer, message id) processed, written with the effect.
 */
export function busTablesSql(schema: string): string {
  const s = quoteSchema(schema);
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.outbox (
  id           bigint GENERATED ALWAYS AS IDENTITY,
  msg_id       text        NOT NULL DEFAULT gen_random_uuid()::text,
  subject      text        NOT NULL,
  type         text        NOT NULL,
  payload      bytea       NOT NULL,
  headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
  key          text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished_idx ON ${s}.outbox (id) WHERE published_at IS NULL;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = '${s}.outbox'::regclass AND contype = 'p') THEN
    ALTER TABLE ${s}.outbox DROP CONSTRAINT outbox_pkey;
  END IF;
END $$;
CREATE INDEX IF NOT EXISTS outbox_published_at_idx ON ${s}.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS ${s}.inbox (
  consumer     text        NOT NULL,
  message_id   text        NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at_brin ON ${s}.inbox USING brin (processed_at);
`;
}

/**
 * Creates the bus tables under a transaction-level advisory lock, so several replicas
 * (or test files) starting at once do not race on CREATE … IF NOT EXISTS.
 */
export function ensureBusTables(pool: Pool, schema: string): Promise<void> {
  return transaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('orderflow.bus.ddl'))");
    await client.query(busTablesSql(schema));
  });
}

/**
 * Deletes a consumer's inbox rows older than `olderThanMs`, in chunks, by one replica at a
 * time (advisory lock; others return 0 at once). Returns the number deleted.
 */
export async function pruneInbox(pool: Pool, schema: string, consumer: string, olderThanMs: number, chunk = 50_000): Promise<number> {
  const s = quoteSchema(schema);
  let total = 0;
  for (let round = 0; round < 20; round++) {
    const deleted = await transaction(pool, async (client) => {
      const lock = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok", [`orderflow.inbox.prune.${schema}.${consumer}`]);
      if (lock.rows[0]?.ok !== true) return undefined;
      const r = await client.query(
        `DELETE FROM ${s}.inbox WHERE consumer = $1 AND message_id IN (
           SELECT message_id FROM ${s}.inbox WHERE consumer = $1 AND processed_at < now() - make_interval(secs => $2) LIMIT $3)`,
        [consumer, olderThanMs / 1000, chunk],
      );
      return r.rowCount ?? 0;
    });
    if (deleted === undefined) return total;
    total += deleted;
    if (deleted < chunk) return total;
  }
  return total;
}
