import { randomBytes } from "node:crypto";
import { afterAll, beforeAll } from "vitest";
import { Database } from "../../services/platform/db.js";
import { createLogger } from "../../services/platform/logger.js";
import { migrate } from "../../services/platform/migrate.js";

export const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface OrderSchema {
  /** The schema's name, for what writes to the outbox by name. */
  schema: string;
  /** The database, once set up. */
  db(): Database;
}

/**
 * The order service's tables in a schema of their own for the calling test file (or
 * describe block): migrated before its tests, dropped after them.
 */
export function useOrderSchema(name: string, options: { poolMax?: number } = {}): OrderSchema {
  const schema = `order_${name}_${process.pid}_${randomBytes(3).toString("hex")}`;
  let db: Database | undefined;
  beforeAll(async () => {
    await migrate({ databaseUrl: DATABASE_URL, service: "order", schema, logger: createLogger(`order-${name}-test`, "warn"), busTables: true });
    db = new Database({ url: DATABASE_URL, poolMax: options.poolMax ?? 4, backgroundPoolMax: 2, schema, applicationName: `order-${name}-test` });
  });
  afterAll(async () => {
    await db?.primary.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await db?.close();
  });
  return {
    schema,
    db: () => {
      if (!db) throw new Error(`the ${name} test schema is not set up`);
      return db;
    },
  };
}
