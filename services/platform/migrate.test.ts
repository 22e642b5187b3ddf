import { readdirSync } from "node:fs";
import { join } from "node:path";
import { runner } from "node-pg-migrate";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { ensureBusTables } from "./bus/sql.js";
import { createLogger } from "./logger.js";
import { migrate, projectRoot } from "./migrate.js";

const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const schemas: string[] = [];
afterAll(async () => {
  for (const schema of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
});

/** The schema's indexes, as Postgres prints their definitions (schema name left out), sorted. */
async function indexesOf(schema: string): Promise<string[]> {
  const { rows } = await pool.query<{ def: string }>("SELECT replace(indexdef, $1, '') AS def FROM pg_indexes WHERE schemaname = $2 ORDER BY 1", [`"${schema}".`, schema]);
  return rows.map((r) => r.def.replace(`${schema}.`, ""));
}

async function tablesOf(schema: string): Promise<string[]> {
  const { rows } = await pool.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", [schema]);
  return rows.map((r) => r.table_name);
}

describe("service migrations", () => {
  // Earlier versions of these services created the bus tables; the order service still writes an outbox.
  it.each([
    ["inventory", "products"],
    ["payment", "wallets"],
    ["notification", "notifications"],
  ])("%s: an existing schema loses the bus tables it no longer uses, and keeps its own", async (service, ownTable) => {
    const schema = `migrate_test_${service}_${process.pid}`;
    schemas.push(schema);
    await ensureBusTables(pool, schema);
    await pool.query(`INSERT INTO "${schema}".inbox (consumer, message_id) VALUES ('old', 'm-1')`);
    await migrate({ databaseUrl: DATABASE_URL, service, schema, logger: createLogger("migrate-test", "error") });
    const tables = await tablesOf(schema);
    expect(tables).toContain(ownTable);
    expect(tables.filter((t) => t === "outbox" || t === "inbox")).toEqual([]);
  });

  it("order keeps its outbox", async () => {
    const schema = `migrate_test_order_${process.pid}`;
    schemas.push(schema);
    await migrate({ databaseUrl: DATABASE_URL, service: "order", schema, logger: createLogger("migrate-test", "error"), busTables: true });
    expect(await tablesOf(schema)).toEqual(expect.arrayContaining(["orders", "outbox", "inbox"]));
  });

  it.each(["order", "inventory", "payment", "notification"])("%s: each migration can be undone (with those after it), and applied again", async (service) => {
    const schema = `migrate_test_roundtrip_${service}_${process.pid}`;
    schemas.push(schema);
    const logger = createLogger("migrate-test", "error");
    const dir = join(projectRoot(), "services", service, "migrations");
    const up = () => migrate({ databaseUrl: DATABASE_URL, service, schema, logger, busTables: service === "order" });
    const state = async () => ({ tables: await tablesOf(schema), indexes: await indexesOf(schema) });
    await up();
    const applied = await state();
    const migrations = readdirSync(dir).filter((file) => file.endsWith(".sql")).length;
    for (let undone = 1; undone <= migrations; undone++) {
      // The schema is this test's alone; the database-wide lock would refuse the undo while
      // another test file migrates a schema of its own in the same database.
      await runner({ databaseUrl: DATABASE_URL, dir, schema, migrationsTable: "schema_migrations", direction: "down", count: undone, noLock: true, log: () => undefined });
      await up();
      expect(await state(), `${undone} migration(s) undone, then applied again`).toEqual(applied);
    }
  });
});
