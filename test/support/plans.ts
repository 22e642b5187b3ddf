import type pg from "pg";

/** A node of `EXPLAIN (ANALYZE, FORMAT JSON)`'s plan, with the fields tests look at. */
export interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Index Cond"?: string;
  "Actual Rows": number;
  "Actual Loops": number;
  "Rows Removed by Filter"?: number;
  Plans?: PlanNode[];
}

/** The statements `run` sends through `pool` while it runs, as sent (text and values). */
export async function statementsSent(pool: pg.Pool, run: () => Promise<unknown>): Promise<pg.QueryConfig[]> {
  const query = pool.query;
  const sent: pg.QueryConfig[] = [];
  pool.query = function (this: pg.Pool, config: string | pg.QueryConfig, values?: unknown[]) {
    sent.push(typeof config === "string" ? { text: config, values } : config);
    return (query as (...args: unknown[]) => unknown).call(this, config, values);
  } as typeof pool.query;
  try {
    await run();
  } finally {
    pool.query = query;
  }
  return sent;
}

/**
 * How many rows running `statement` (with its values) reads through `indexes`, those its filter
 * then drops included, on the plan Postgres keeps for it once prepared: the generic plan, which
 * knows no parameter's value. Throws when that plan uses none of them.
 * (EXPLAIN of a statement with parameters plans for the values given, so it is PREPAREd and EXECUTEd.)
 */
export async function indexRowsRead(pool: pg.Pool, statement: pg.QueryConfig, indexes: string | string[]): Promise<number> {
  const names = new Set([indexes].flat());
  const client = await pool.connect();
  const name = "plan_probe";
  try {
    await client.query("BEGIN");
    await client.query("SET LOCAL plan_cache_mode = force_generic_plan");
    await client.query(`PREPARE ${name} AS ${statement.text}`);
    const args = (statement.values ?? []).map((value) => literal(client, value)).join(", ");
    const { rows } = await client.query<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>(`EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE ${name}(${args})`);
    const plan = rows[0]?.["QUERY PLAN"][0]?.Plan;
    if (!plan) throw new Error("EXPLAIN returned no plan");
    const scans = nodesOf(plan).filter((node) => names.has(node["Index Name"] ?? ""));
    if (scans.length === 0) throw new Error(`the plan uses none of ${[...names].join(", ")}: ${JSON.stringify(plan)}`);
    return scans.reduce((sum, scan) => sum + (scan["Actual Rows"] + (scan["Rows Removed by Filter"] ?? 0)) * scan["Actual Loops"], 0);
  } finally {
    await client.query("ROLLBACK");
    await client.query(`DEALLOCATE ${name}`).catch(() => undefined);
    client.release();
  }
}

function nodesOf(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(nodesOf)];
}

/** A statement's value as an SQL literal (strings, numbers, bigints, dates, nulls and arrays of them). */
function literal(client: pg.PoolClient, value: unknown): string {
  if (value === null || value === undefined) return "NULL";
  if (value instanceof Date) return client.escapeLiteral(value.toISOString());
  if (Array.isArray(value)) {
    const elements = value.map((v: unknown) => (v === null || v === undefined ? "NULL" : `"${String(v).replace(/["\\]/g, "\\$&")}"`));
    return client.escapeLiteral(`{${elements.join(",")}}`);
  }
  return client.escapeLiteral(String(value));
}
