import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { autovacuumOffWarning, warnIfAutovacuumOff } from "./autovacuum.js";

const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
afterAll(() => pool.end());

describe("warnIfAutovacuumOff", () => {
  it("warns with the fix exactly when the server's autovacuum is off", async () => {
    const setting = (await pool.query<{ autovacuum: string }>("SHOW autovacuum")).rows[0]?.autovacuum;
    const warnings: Array<[string, unknown]> = [];
    const warned = await warnIfAutovacuumOff(pool, { warn: (message: string, meta: Record<string, string>) => warnings.push([message, meta]) });
    expect(warned).toBe(setting === "off");
    expect(warnings).toEqual(setting === "off" ? [[autovacuumOffWarning, { fix: "ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();" }]] : []);
  });
});
