import { warnIfAutovacuumOff } from "./autovacuum.js";
import { Database } from "./db.js";
import type { ServiceContext } from "./host.js";
import { migrate } from "./migrate.js";

/** The database settings every stateful service reads (databaseConfigShape). */
export interface DatabaseSettings {
  DATABASE_URL: string;
  DATABASE_READ_URL?: string | undefined;
  DATABASE_POOL_MAX: number;
  DATABASE_BACKGROUND_POOL_MAX: number;
}

export interface SchemaOptions {
  /** The service writes an outbox, or consumes with an inbox: create the bus tables too (default false). */
  busTables?: boolean;
}

/** Applies the service's migrations (and the bus tables, if it uses them) to its schema. */
export function migrateServiceSchema(context: ServiceContext, settings: DatabaseSettings, schema: string, options: SchemaOptions = {}): Promise<void> {
  return migrate({ databaseUrl: settings.DATABASE_URL, service: context.name, schema, logger: context.logger, busTables: options.busTables ?? false });
}

/** Migrates the service's schema, then opens its primary and replica pools; warns if the server runs without autovacuum. */
export async function openServiceDatabase(context: ServiceContext, settings: DatabaseSettings, schema: string, options: SchemaOptions = {}): Promise<Database> {
  await migrateServiceSchema(context, settings, schema, options);
  const db = new Database({ url: settings.DATABASE_URL, readUrl: settings.DATABASE_READ_URL, poolMax: settings.DATABASE_POOL_MAX, backgroundPoolMax: settings.DATABASE_BACKGROUND_POOL_MAX, schema, applicationName: context.name });
  await warnIfAutovacuumOff(db.primary, context.logger);
  return db;
}
