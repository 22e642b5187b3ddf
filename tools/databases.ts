// Databases on a Postgres server, through an administrative connection: the one a URL names,
// created when missing, dropped, listed.
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { InfraError } from "./infra-error.js";

const noop = (): void => undefined;

/** The database name in a Postgres URL. */
export function databaseName(databaseUrl: string): string {
  const name = decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, ""));
  if (!name) throw new InfraError(`DATABASE_URL names no database: ${databaseUrl}`);
  return name;
}

/** The same server URL with another database name. */
export function withDatabase(databaseUrl: string, name: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${encodeURIComponent(name)}`;
  return url.toString();
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

async function withAdminClient<T>(databaseUrl: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  let client: pg.Client;
  for (let attempt = 1; ; attempt++) {
    client = new pg.Client({ connectionString: withDatabase(databaseUrl, "postgres"), application_name: "orderflow-tools", connectionTimeoutMillis: 10_000 });
    client.on("error", noop);
    try {
      await client.connect();
      break;
    } catch (error) {
      // 57P03: the server accepts TCP connections but is still starting up.
      if (isPgError(error) && error.code === "57P03" && attempt < 30) {
        await sleep(500);
        continue;
      }
      const where = databaseUrl.replace(/:[^:@/]*@/, ":***@");
      if (isAuthFailure(error)) {
        const url = new URL(databaseUrl);
        throw new InfraError(
          `Postgres at ${url.host} refused user ${decodeURIComponent(url.username) || "(none)"} (${error instanceof Error ? error.message : String(error)}): set DATABASE_URL=postgres://USER:PASSWORD@${url.host}/orderflow with a role that may create databases (a packaged Postgres asks for a password over TCP)`,
        );
      }
      throw new InfraError(`cannot connect to Postgres at ${where}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  try {
    return await use(client);
  } finally {
    await client.end().catch(noop);
  }
}

/** Creates the URL's database when it is missing; true when it created it. */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const name = databaseName(databaseUrl);
  return withAdminClient(databaseUrl, async (client) => {
    const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (found.rowCount) return false;
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
      return true;
    } catch (error) {
      // Someone else created it at the same moment.
      if (isPgError(error) && (error.code === "42P04" || error.code === "23505")) return false;
      throw error;
    }
  });
}

/** Drops a database, disconnecting whoever still uses it. */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  const name = databaseName(databaseUrl);
  await withAdminClient(databaseUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`));
}

/** Names of the databases on the server whose names start with prefix. */
export async function listDatabases(databaseUrl: string, prefix: string): Promise<string[]> {
  return withAdminClient(databaseUrl, async (client) => {
    const result = await client.query<{ datname: string }>("SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1", [prefix]);
    return result.rows.map((row) => row.datname);
  });
}

/** The server refused who we said we are: a wrong or missing password, a role that does not exist. */
function isAuthFailure(error: unknown): boolean {
  if (isPgError(error) && (error.code === "28P01" || error.code === "28000")) return true;
  return error instanceof Error && /SASL|password authentication failed|client password must be a string/i.test(error.message);
}

function isPgError(error: unknown): error is Error & { code: string } {
  return error instanceof Error && typeof (error as { code?: unknown }).code === "string";
}
