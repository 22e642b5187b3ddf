import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countWork, workBetween } from "./work.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const stream = `WORK_TEST_${process.pid}`;
const subject = `work-test.${process.pid}`;
const ours = (name: string): boolean => name === stream;
// A table of its own (not a temporary one: those write no WAL).
const table = `work_test_${process.pid}`;

let nc: NatsConnection;
let jsm: JetStreamManager;
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
beforeAll(async () => {
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [subject] });
});
afterAll(async () => {
  await jsm?.streams.delete(stream).catch(() => undefined);
  await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await nc?.close();
  await pool.end();
});

describe("work counts", () => {
  it("counts the messages stored in the counted streams and the transactions that wrote", async () => {
    const before = await countWork(jsm, pool, ours);
    const js = jetstream(nc);
    for (let i = 0; i < 3; i++) await js.publish(subject, "x".repeat(100));
    await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (n int)`);
    const mid = await countWork(jsm, pool, ours);
    // Two transactions that write, then a read, which takes no transaction id.
    await pool.query(`INSERT INTO ${table} VALUES (1)`);
    await pool.query("BEGIN");
    await pool.query(`INSERT INTO ${table} VALUES (2)`);
    await pool.query(`INSERT INTO ${table} VALUES (3)`);
    await pool.query("COMMIT");
    await pool.query(`SELECT count(*) FROM ${table}`);
    const after = await countWork(jsm, pool, ours);

    expect(after.jetstreamMessages - before.jetstreamMessages).toBe(3);
    // Each message stored with its subject and headers beside its 100 bytes.
    expect(after.jetstreamBytes - before.jetstreamBytes).toBeGreaterThanOrEqual(3 * 100);
    expect(after.jetstreamBytes - before.jetstreamBytes).toBeLessThan(3 * 300);
    // Other test files write in the same server meanwhile: at least ours.
    expect(after.postgresWrites - mid.postgresWrites).toBeGreaterThanOrEqual(2);
    // Three rows and two commits: each at least a WAL record of a few dozen bytes.
    expect(after.postgresWalBytes - mid.postgresWalBytes).toBeGreaterThanOrEqual(5 * 24);
  });

  it("divides the work by the sagas concluded, and gives no per-saga figure when none concluded", () => {
    const before = { jetstreamMessages: 100, jetstreamBytes: 40_000, postgresWrites: 1_000, postgresWalBytes: 50_000 };
    const after = { jetstreamMessages: 170, jetstreamBytes: 67_655, postgresWrites: 1_095, postgresWalBytes: 123_456 };
    expect(workBetween(before, after, 10)).toEqual({
      jetstreamMessages: 70,
      jetstreamBytes: 27_655,
      postgresWrites: 95,
      postgresWalBytes: 73_456,
      perSaga: { jetstreamMessages: 7, jetstreamBytes: 2_766, postgresWrites: 9.5, postgresWalBytes: 7_346 },
    });
    expect(workBetween(before, after, 0).perSaga).toBeNull();
    // The streams trimmed during the step (no recording): what they hold is not what was published.
    const trimmed = workBetween(before, after, 10, false);
    expect(trimmed).not.toHaveProperty("jetstreamBytes");
    expect(trimmed.perSaga).toEqual({ jetstreamMessages: 7, postgresWrites: 9.5, postgresWalBytes: 7_346 });
  });
});
