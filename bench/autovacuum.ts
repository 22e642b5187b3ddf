import pg from "pg";
import { surviveDroppedConnections } from "../services/platform/db.js";

// What autovacuum would do to the run's database, for a Postgres that runs without it.

/**
 * The tables autovacuum would analyze now: rows changed since the last analyze above
 * `autovacuum_analyze_threshold + autovacuum_analyze_scale_factor × rows` (its rule).
 */
const STALE_TABLES = `
  SELECT format('%I.%I', s.schemaname, s.relname) AS name
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
   WHERE s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
           + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)`;

/** One visit of the stand-in: when it began (ms since the epoch), the tables it analyzed, how long it took. */
export interface AutovacuumVisit {
  at: number;
  tables: string[];
  durationMs: number;
}

/**
 * Stands in for autovacuum on a server that runs without it. A bench database starts
 * empty and grows by thousands of rows a second: without fresh statistics the services'
 * cached plans stay those made for tiny tables (sequential scans of every order, reservation
 * and payment for each batch), a cost no deployed system carries. `vacuum()` does what
 * autovacuum would have done by the start of a step; while a step runs, `analyzeWhileRunning`
 * analyzes each table autovacuum's rule picks, as often as autovacuum visits a database:
 * once every `autovacuum_naptime`, on one clock for the whole run.
 */
export class AutovacuumStandIn {
  private readonly pool: pg.Pool;
  private naptime: Promise<number> | undefined;
  /** When the next visit is due (Date.now() time), kept across steps as autovacuum's launcher keeps it. */
  private nextVisitAt: number | undefined;

  /** naptimeMs: the time between visits; by default the server's `autovacuum_naptime`. */
  constructor(databaseUrl: string, naptimeMs?: number) {
    this.pool = surviveDroppedConnections(new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: "orderflow-bench-autovacuum" }));
    if (naptimeMs !== undefined) this.naptime = Promise.resolve(naptimeMs);
  }

  /** The time between two visits of the database, in ms. */
  naptimeMs(): Promise<number> {
    this.naptime ??= this.pool
      .query<{ seconds: number }>("SELECT setting::int AS seconds FROM pg_settings WHERE name = 'autovacuum_naptime'")
      .then(({ rows }) => (rows[0]?.seconds ?? 60) * 1_000);
    return this.naptime;
  }

  async vacuum(): Promise<void> {
    await this.pool.query("VACUUM (ANALYZE)");
  }

  /**
   * Analyzes stale tables at each visit that falls due until the returned function is called
   * (which waits for a running visit and returns the visits made). Visits that fell due while
   * no step ran are skipped: the VACUUM (ANALYZE) before each step did their work.
   */
  analyzeWhileRunning(): () => Promise<AutovacuumVisit[]> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<void> = Promise.resolve();
    const visits: AutovacuumVisit[] = [];
    const scheduleNext = (naptime: number): void => {
      if (stopped) return;
      const now = Date.now();
      let due = this.nextVisitAt ?? now + naptime;
      while (due <= now) due += naptime;
      this.nextVisitAt = due;
      timer = setTimeout(() => {
        this.nextVisitAt = due + naptime;
        const next = () => scheduleNext(naptime);
        const at = Date.now();
        running = this.analyzeStale().then((tables) => {
          visits.push({ at, tables, durationMs: Date.now() - at });
          next();
        }, next);
      }, due - now);
      timer.unref();
    };
    running = this.naptimeMs().then(scheduleNext, () => undefined);
    return async () => {
      stopped = true;
      clearTimeout(timer);
      await running;
      return visits;
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
