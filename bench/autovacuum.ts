import pg from "pg";
import { surviveDroppedConnections } from "../services/platform/db.js";

// What autovacuum would do to the run's database, for a Postgres that runs without it.

/** How often tables are checked for statistics gone stale while a step runs. */
export const ANALYZE_CHECK_MS = 5_000;

/**
 * The tables autovacuum would analyze now: rows changed since the last analyze above
 * `autovacuum_analyze_threshold + autovacuum_analyze_scale_factor × rows` (its rule).
 */
const STALE_TABLES = `
  SELECT format('%I.%I', s.schemaname, s.relname) AS name
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
   WHERE s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
           + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)`;

/**
 * Stands in for autovacuum on a server that runs without it. A bench database starts
 * empty and grows by thousands of rows a second: without fresh statistics the services'
 * cached plans stay those made for tiny tables (sequential scans of every order, reservation
 * and payment for each batch), a cost no deployed system carries. `vacuum()` does what
 * autovacuum would have done by the start of a step; while a step runs, `analyzeWhileRunning`
 * analyzes each table autovacuum's rule picks, checking every ANALYZE_CHECK_MS.
 */
export class AutovacuumStandIn {
  private readonly pool: pg.Pool;

  constructor(databaseUrl: string) {
    this.pool = surviveDroppedConnections(new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: "orderflow-bench-autovacuum" }));
  }

  async vacuum(): Promise<void> {
    await this.pool.query("VACUUM (ANALYZE)");
  }

  /** Analyzes stale tables until the returned function is called (which waits for a running check). */
  analyzeWhileRunning(): () => Promise<void> {
    let running: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      running = running.then(
        () => this.analyzeStale().then(() => undefined),
        () => undefined,
      );
    }, ANALYZE_CHECK_MS);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await running;
    };
  }

  /** Tables analyzed, by name. */
  async analyzeStale(): Promise<string[]> {
    const { rows } = await this.pool.query<{ name: string }>(STALE_TABLES);
    for (const { name } of rows) await this.pool.query(`ANALYZE ${name}`);
    return rows.map((r) => r.name);
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}
