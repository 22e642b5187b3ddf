import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { Lane } from "./lane.js";

const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4, pipeline: true });
afterAll(() => pool.end());

const backend = { text: "SELECT pg_backend_pid() AS pid, clock_timestamp() AS at" };
type Backend = { pid: number; at: Date };

describe("Lane", () => {
  it("sends a statement behind those under way on their connection, where Postgres runs it after them", async () => {
    // Its time is taken after the sleep.
    const first = Lane.query<Backend>(pool, { text: "SELECT pg_backend_pid() AS pid, clock_timestamp() AS at FROM pg_sleep(0.2)" });
    const behind = Lane.query<Backend>(pool, backend, first.lane);
    const [slow, next] = await Promise.all([first.result, behind.result]);
    expect(behind.lane).toBe(first.lane);
    expect(next.rows[0]!.pid).toBe(slow.rows[0]!.pid);
    expect(next.rows[0]!.at.getTime()).toBeGreaterThanOrEqual(slow.rows[0]!.at.getTime());
    // The connection went back to the pool with the last answer.
    await expect.poll(() => pool.idleCount).toBe(pool.totalCount);
  });

  it("takes a connection of its own when nothing is under way on the lane named", async () => {
    const first = Lane.query<Backend>(pool, backend);
    await first.result;
    const blocker = await pool.connect();
    try {
      const later = Lane.query<Backend>(pool, backend, first.lane);
      expect(later.lane).not.toBe(first.lane);
      await later.result;
    } finally {
      blocker.release();
    }
  });

  it("closes a connection that answered with an error instead of lending it again", async () => {
    const failing = Lane.query(pool, { text: "SELECT pg_backend_pid() AS pid, 1 / 0 AS never" });
    const behind = Lane.query<Backend>(pool, backend, failing.lane);
    await expect(failing.result).rejects.toThrow(/division by zero/);
    const { pid } = (await behind.result).rows[0]!;
    const next = await Lane.query<Backend>(pool, backend).result;
    expect(next.rows[0]!.pid).not.toBe(pid);
  });
});
