import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runner } from "node-pg-migrate";
import pg from "pg";
import { ensureBusTables } from "./bus/sql.js";
import { surviveDroppedConnections } from "./db.js";
import type { Logger } from "./logger.js";

/** The directory holding package.json, found from this file in source and in dist/. */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("package.json not found above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

/**
 * Applies services/<service>/migrations/*.sql to the service's schema. Runs under
 * a Postgres advisory lock and waits for it, so replicas starting together apply
 * each migration once. With busTables, also creates the outbox and inbox tables.
 */
export async function migrate(options: { databaseUrl: string; service: string; schema: string; logger: Logger; busTables?: boolean }): Promise<void> {
  const applied = await runner({
    databaseUrl: options.databaseUrl,
    dir: join(projectRoot(), "services", options.service, "migrations"),
    schema: options.schema,
    createSchema: true,
    migrationsTable: "schema_migrations",
    direction: "up",
    count: Infinity,
    advisoryLockMode: "wait",
    checkOrder: true,
    log: () => undefined,
    logger: { debug: () => undefined, info: () => undefined, warn: (msg: string) => options.logger.warn(msg), error: (msg: string) => options.logger.error(msg) },
  });
  if (applied.length > 0) options.logger.info("migrations applied", { migrations: applied.map((m) => m.name) });
  if (options.busTables) {
    const pool = surviveDroppedConnections(new pg.Pool({ connectionString: options.databaseUrl, max: 1 }));
    try {
      await ensureBusTables(pool, options.schema);
    } finally {
      await pool.end();
    }
  }
}
