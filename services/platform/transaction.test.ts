import type { Socket } from "node:net";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { begin, Database, surviveDroppedConnections } from "./db.js";

const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";

const db = new Database({ url: DATABASE_URL, poolMax: 2, schema: "public", applicationName: "transaction-test" });
const sequential = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
afterAll(async () => {
  await Promise.all([db.close(), sequential.end()]);
});

/** Whether `promise` has settled by the time the microtasks queued before this call have run. */
async function settledAlready(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await Promise.resolve();
  return settled;
}

describe("begin", () => {
  it("does not wait for BEGIN on a pipelined client, and what follows runs inside the transaction", async () => {
    const client = await db.primary.connect();
    try {
      expect(client.pipeline).toBe(true);
      await client.query("CREATE TEMP TABLE pipelined (n int)");
      const { confirmed } = await begin(client);
      // No answer can have arrived: nothing has read the socket since BEGIN was written.
      expect(await settledAlready(confirmed)).toBe(false);
      await client.query("INSERT INTO pipelined VALUES (1)");
      await confirmed;
      expect(client.getTransactionStatus()).toBe("T");
      await client.query("ROLLBACK");
      expect((await client.query("SELECT count(*)::int AS n FROM pipelined")).rows[0]).toEqual({ n: 0 });
    } finally {
      client.release(true);
    }
  });

  it("sends BEGIN and the transaction's first statement in one write on a pipelined client", async () => {
    const client = await db.primary.connect();
    try {
      const socket = client.connection.stream as Socket;
      const writes: string[] = [];
      const write = socket._write.bind(socket);
      const writev = socket._writev?.bind(socket);
      socket._write = (chunk: Buffer, encoding, callback) => (writes.push(`write ${chunk.length}`), write(chunk, encoding, callback));
      if (writev) socket._writev = (chunks, callback) => (writes.push(`writev ${chunks.length}`), writev(chunks, callback));
      const { confirmed } = await begin(client);
      await client.query("SELECT $1::int AS n", [1]);
      await confirmed;
      await client.query("ROLLBACK");
      // BEGIN, then the statement's Parse, Bind, Describe, Execute and Sync; then ROLLBACK.
      expect(writes).toEqual(["writev 6", expect.stringMatching(/^write /)]);
    } finally {
      client.release(true);
    }
  });

  it("waits for BEGIN on a client that is not pipelined", async () => {
    const client = await sequential.connect();
    try {
      const { confirmed } = await begin(client);
      expect(await settledAlready(confirmed)).toBe(true);
      expect(client.getTransactionStatus()).toBe("T");
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
  });

  it("Database.transaction commits what its function wrote and rolls back when it throws", async () => {
    await db.primary.query("CREATE TABLE IF NOT EXISTS transaction_test (n int)");
    try {
      await db.transaction(async (tx) => tx.query("INSERT INTO transaction_test VALUES (1)"));
      await expect(
        db.transaction(async (tx) => {
          await tx.query("INSERT INTO transaction_test VALUES (2)");
          throw new Error("changed my mind");
        }),
      ).rejects.toThrow("changed my mind");
      expect((await db.primary.query("SELECT array_agg(n)::int[] AS ns FROM transaction_test")).rows[0]).toEqual({ ns: [1] });
    } finally {
      await db.primary.query("DROP TABLE transaction_test");
    }
  });

  it("a transaction whose connection is lost fails, and the next one gets a working connection", async () => {
    const solo = new Database({ url: DATABASE_URL, poolMax: 1, schema: "public", applicationName: "transaction-test-solo" });
    try {
      await expect(solo.transaction((tx) => tx.query("SELECT pg_terminate_backend(pg_backend_pid())"))).rejects.toThrow();
      expect(await solo.transaction(async (tx) => (await tx.query<{ one: number }>("SELECT 1 AS one")).rows[0])).toEqual({ one: 1 });
    } finally {
      await solo.close();
    }
  });
});

describe("surviveDroppedConnections", () => {
  it("a connection dropped while checked out and idle fails its next query, not the process; the pool goes on", async () => {
    const pool = surviveDroppedConnections(new pg.Pool({ connectionString: DATABASE_URL, max: 1 }));
    try {
      const client = await pool.connect();
      const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid;
      // Postgres tells the client while no query is under way: pg emits `error` on the client.
      await sequential.query("SELECT pg_terminate_backend($1)", [pid]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await expect(client.query("SELECT 1")).rejects.toThrow();
      client.release();
      expect((await pool.query<{ one: number }>("SELECT 1 AS one")).rows[0]).toEqual({ one: 1 });
    } finally {
      await pool.end();
    }
  });
});
