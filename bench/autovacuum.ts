import pg from "pg";
import { surviveDroppedConnections, transaction } from "../services/platform/db.js";

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

/**
 * Autovacuum's pace for the statements of this transaction: its workers sleep
 * `autovacuum_vacuum_cost_delay` each time their page accesses add up to
 * `autovacuum_vacuum_cost_limit` (-1: the vacuum_ setting), where a manual ANALYZE runs
 * unthrottled. Returns the delay and limit in force.
 */
const AT_AUTOVACUUMS_PACE = `
  SELECT set_config('vacuum_cost_delay', CASE current_setting('autovacuum_vacuum_cost_delay')
           WHEN '-1' THEN current_setting('vacuum_cost_delay') ELSE current_setting('autovacuum_vacuum_cost_delay') END, true) AS "costDelay",
         set_config('vacuum_cost_limit', CASE current_setting('autovacuum_vacuum_cost_limit')
           WHEN '-1' THEN current_setting('vacuum_cost_limit') ELSE current_setting('autovacuum_vacuum_cost_limit') END, true)::int AS "costLimit"`;

/** Autovacuum's cost-based delay (e.g. "2ms") and the cost limit it sleeps at. */
export interface AutovacuumPace {
  costDelay: string;
  costLimit: number;
}

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

  /** Tables analyzed, by name. Each table in a transaction of its own at autovacuum's pace, as its workers take them. */
  async analyzeStale(): Promise<string[]> {
    const { rows } = await this.pool.query<{ name: string }>(STALE_TABLES);
    for (const { name } of rows) await this.analyzeAtAutovacuumsPace(name);
    return rows.map((r) => r.name);
  }

  /** ANALYZE of one table, throttled as an autovacuum worker's; returns the pace it ran at. */
  analyzeAtAutovacuumsPace(table: string): Promise<AutovacuumPace> {
    return transaction(this.pool, async (client) => {
      const { rows } = await client.query<AutovacuumPace>(AT_AUTOVACUUMS_PACE);
      await client.query(`ANALYZE ${table}`);
      const [pace] = rows;
      if (!pace) throw new Error("set_config returned no row");
      return pace;
    });
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}
