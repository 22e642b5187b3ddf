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
  await nc?.close();
  await pool.end();
});

describe("work counts", () => {
  it("counts the messages stored in the counted streams and the transactions committed in the database", async () => {
    const before = await countWork(jsm, pool, ours);
    const js = jetstream(nc);
    for (let i = 0; i < 3; i++) await js.publish(subject, "x");
    // Two transactions on a connection of their own, which reports them as it closes.
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    await client.query("SELECT 1");
    await client.query("BEGIN");
    await client.query("SELECT 2");
    await client.query("COMMIT");
    await client.end();

    let after = await countWork(jsm, pool, ours);
    for (let waited = 0; after.postgresTransactions - before.postgresTransactions < 2 && waited < 5_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await countWork(jsm, pool, ours);
    }
    expect(after.jetstreamMessages - before.jetstreamMessages).toBe(3);
    // Other test files commit in the same database meanwhile: at least ours.
    expect(after.postgresTransactions - before.postgresTransactions).toBeGreaterThanOrEqual(2);
  });

  it("divides the work by the sagas concluded, and gives no per-saga figure when none concluded", () => {
    const before = { jetstreamMessages: 100, postgresTransactions: 1_000 };
    const after = { jetstreamMessages: 170, postgresTransactions: 1_095 };
    expect(workBetween(before, after, 10)).toEqual({ jetstreamMessages: 70, postgresTransactions: 95, perSaga: { jetstreamMessages: 7, postgresTransactions: 9.5 } });
    expect(workBetween(before, after, 0).perSaga).toBeNull();
  });
});
