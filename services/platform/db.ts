import { createHash } from "node:crypto";
import pg from "pg";
import { asError } from "./errors.js";
import { holdWritesForTurn } from "./turn-writes.js";

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type QueryConfig = pg.QueryConfig;
export type QueryResultRow = pg.QueryResultRow;
/** Anything that runs a query: a pool or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, "query">;
/** Anything that runs one statement given whole: a pool, a client, a `Lane`'s sender. */
export interface Statements {
  query<R extends pg.QueryResultRow>(config: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

const statements = new Map<string, { name: string; text: string }>();

/**
 * The query as a named (prepared) statement: each connection has Postgres parse and plan it
 * once instead of on every call (measured here: ~50 µs of Postgres CPU saved per statement).
 * The name is derived from the text, so one text always has one name. For the hot statements
 * of fixed text; not for text built from varying input (each variant stays prepared).
 *
 * Array parameters (`$n::type[]`) are read through a sub-select (see `opaqueArrays`).
 */
export function prepared(text: string, values: unknown[]): pg.QueryConfig {
  let statement = statements.get(text);
  if (statement === undefined) {
    statement = { name: `${statementLabel(text)}_${createHash("sha1").update(text).digest("hex").slice(0, 16)}`, text: opaqueArrays(text) };
    statements.set(text, statement);
  }
  return { name: statement.name, text: statement.text, values };
}

/**
 * `$n::type[]` becomes `(SELECT $n::type[])::type[]`, an array Postgres does not look into
 * when it plans. Postgres re-plans a prepared statement at every call for as long as a plan
 * made for the values given looks cheaper than the generic plan, and the generic plan takes
 * an array parameter for ten elements: our batches of fewer keys were planned at every call,
 * which cost a one-order read as much as running it, and a batch write up to 400 µs. Behind a
 * sub-select the array counts as ten elements for either plan, so after five calls Postgres
 * keeps the generic one (and makes it again when a table it reads is analyzed). Our array
 * statements look rows up by key, which is the plan for ten elements as for two hundred.
 */
export function opaqueArrays(text: string): string {
  return text.replace(/\$(\d+)::([a-z][a-z0-9_]*)\[\]/g, "(SELECT $$$1::$2[])::$2[]");
}

/**
 * What a statement does, for its name: the name is what Postgres's views and the pg client's
 * spans show (`pg.query:insert_orders_…`). Its first write and the table written, else the
 * first table read.
 */
export function statementLabel(text: string): string {
  // Not the UPDATE of a row lock (FOR [NO KEY] UPDATE) or of an upsert (DO UPDATE SET).
  const write = /\b(insert\s+into|(?<!\b(?:for|key|do)\s+)update|delete\s+from)\s+([a-z_][a-z0-9_.]*)/i.exec(text);
  const read = /\bselect\b[\s\S]*?\bfrom\s+([a-z_][a-z0-9_.]*)/i.exec(text);
  const [verb, table] = write ? [write[1]!.split(/\s+/)[0]!, write[2]!] : read ? ["select", read[1]!] : ["query", ""];
  return [verb.toLowerCase(), table.toLowerCase().replace(/\W/g, "_")].filter(Boolean).join("_").slice(0, 40);
}

const commitCallbacks = new WeakMap<pg.ClientBase, Set<() => void>>();

/**
 * Runs `callback` once the open transaction of `client` has committed (not if it rolls
 * back). The code that commits calls `committed` / `rolledBack`: `Database.transaction`
 * and the bus consumer do. A callback registered twice runs once.
 */
export function afterCommit(client: pg.ClientBase, callback: () => void): void {
  const callbacks = commitCallbacks.get(client) ?? new Set<() => void>();
  commitCallbacks.set(client, callbacks.add(callback));
}

/** Call right after `client` committed: runs its `afterCommit` callbacks. */
export function committed(client: pg.ClientBase): void {
  const callbacks = commitCallbacks.get(client);
  commitCallbacks.delete(client);
  for (const callback of callbacks ?? []) callback();
}

/** Call when `client`'s transaction rolled back: drops its `afterCommit` callbacks. */
export function rolledBack(client: pg.ClientBase): void {
  commitCallbacks.delete(client);
}

/**
 * Sends BEGIN for a transaction on `client`. On a pipelined client (pool option `pipeline:
 * true`, as `Database` makes them) it does not wait for the answer: BEGIN goes out with the
 * transaction's first statement, in the same write when that statement is sent in the same
 * turn, and the two cost one round trip, one system call and one wake-up of the backend.
 * Postgres runs them in order, and BEGIN on a fresh connection fails only with the connection,
 * which fails that statement too. Await the returned confirmation before COMMIT.
 */
export async function begin(client: pg.PoolClient): Promise<{ confirmed: Promise<unknown> }> {
  if (client.pipeline) holdWritesForTurn(client.connection.stream);
  const sent = client.query("BEGIN");
  if (!client.pipeline) await sent;
  // Observed here so that a failure while the first statement is awaited is not unhandled.
  sent.catch(() => undefined);
  return { confirmed: sent };
}

/**
 * Makes a dropped connection (Postgres restarting, failing over, terminating backends) fail
 * only the queries it carried, never the process. A connection that dies emits `error` on its
 * client; pg-pool listens for it only while the connection is idle, and a checked-out one —
 * also in the moment between the pool handing it over and its borrower going on — would
 * end the process with an unheard `error` event. The queries fail with the error, and the
 * pool discards the connection when it comes back.
 */
export function surviveDroppedConnections(pool: pg.Pool): pg.Pool {
  pool.on("error", () => undefined);
  pool.on("connect", (client) => client.on("error", () => undefined));
  return pool;
}

/**
 * Runs `fn` in a transaction on a connection of `pool`: BEGIN (see `begin`), `fn`, COMMIT, then
 * the client's `afterCommit` callbacks. When `fn` or COMMIT throws it rolls back and rethrows;
 * a connection whose ROLLBACK failed is closed instead of going back to the pool.
 */
export async function transaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const { confirmed } = await begin(client);
    const result = await fn(client);
    await confirmed;
    await client.query("COMMIT");
    committed(client);
    return result;
  } catch (error) {
    rolledBack(client);
    await client.query("ROLLBACK").catch((rollbackError: unknown) => {
      broken ??= asError(rollbackError);
    });
    throw error;
  } finally {
    client.release(broken);
  }
}

export interface DatabaseOptions {
  url: string;
  readUrl?: string | undefined;
  poolMax: number;
  /** Connections of the background pool (consumers, relay, sweeps); default 10. */
  backgroundPoolMax?: number | undefined;
  /** The service's own schema; first on the search_path. */
  schema: string;
  applicationName: string;
}

/**
 * A primary pool for requests' writes and read-after-write, a replica pool for queries
 * (the primary again when no replica is configured), and a background pool on the
 * primary for the saga's workers (consumers, outbox relay, sweeps). The workers get
 * their own connections so that a flood of requests waiting for the primary pool
 * cannot starve the sagas already accepted: under overload the system sheds new
 * requests but keeps finishing what it took.
 */
export class Database {
  readonly primary: pg.Pool;
  readonly replica: pg.Pool;
  readonly background: pg.Pool;

  constructor(options: DatabaseOptions) {
    const common = {
      max: options.poolMax,
      application_name: options.applicationName,
      // No JIT: an index lookup whose generic plan Postgres costs high (a customer with many orders in
      // the statistics) was compiled on every call, 25 ms of LLVM for 0.1 ms of work.
      options: `-c search_path=${options.schema},public -c jit=off`,
      connectionTimeoutMillis: 5_000,
      idleTimeoutMillis: 30_000,
      // Lets a transaction's BEGIN travel with its first statement (see `begin`).
      pipeline: true,
    };
    this.primary = new pg.Pool({ ...common, connectionString: options.url });
    this.replica = options.readUrl ? new pg.Pool({ ...common, connectionString: options.readUrl }) : this.primary;
    this.background = new pg.Pool({ ...common, max: options.backgroundPoolMax ?? 10, connectionString: options.url, application_name: `${options.applicationName}-background` });
    for (const pool of this.pools()) surviveDroppedConnections(pool);
  }

  private pools(): Set<pg.Pool> {
    return new Set([this.primary, this.replica, this.background]);
  }

  /** Runs fn in a transaction on the primary (or `pool`); see `transaction`. */
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>, pool: pg.Pool = this.primary): Promise<T> {
    return transaction(pool, fn);
  }

  /**
   * A query on the replica that falls back to the primary when the replica has
   * not caught up yet (found nothing), so a caller never reads backwards.
   */
  async readFresh<T>(query: (db: Queryable) => Promise<T | undefined>): Promise<T | undefined> {
    const fromReplica = await query(this.replica);
    if (fromReplica !== undefined || this.replica === this.primary) return fromReplica;
    return query(this.primary);
  }

  /** readFresh for many keys at once: the keys the replica does not have yet are read from the primary. */
  async readFreshMany<K, T>(keys: readonly K[], query: (db: Queryable, keys: readonly K[]) => Promise<Map<K, T>>): Promise<Array<T | undefined>> {
    const fromReplica = await query(this.replica, keys);
    const missing = keys.filter((key) => !fromReplica.has(key));
    const fromPrimary = missing.length > 0 && this.replica !== this.primary ? await query(this.primary, missing) : new Map<K, T>();
    return keys.map((key) => fromReplica.get(key) ?? fromPrimary.get(key));
  }

  async ping(): Promise<boolean> {
    try {
      await this.primary.query("SELECT 1");
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools()].map((pool) => pool.end()));
  }
}
