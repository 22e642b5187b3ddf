import { create, fromBinary } from "@bufbuild/protobuf";
import { context, trace, TraceFlags } from "@opentelemetry/api";
import type { PoolClient } from "pg";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { ReserveStockSchema } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import { ChargePaymentSchema } from "../../../gen/orderflow/payment/v1/payment_pb.js";
import { committed, rolledBack } from "../db.js";
import { busMetrics } from "./metrics.js";
import { Header, outboxChannel, quoteSchema } from "./names.js";
import { enqueueOutbox, outboxInsert, outboxWritten, type WrittenRow } from "./outbox.js";
import type { OutgoingMessage } from "./publish.js";
import { markOutboxSql, outboxBacklogSql, OutboxRelay, type OutboxRelayOptions, readOutboxSql } from "./relay.js";
import { BUNDLE_TYPE } from "./bundle.js";
import { ensureStreams } from "./streams.js";
import { busTestEnv, counted, readBusMessages, readStream, type BusTestEnv, useTraceContext, waitFor } from "./testkit.js";

process.env["LOG_LEVEL"] ??= "warn";
useTraceContext();

let env: BusTestEnv;
beforeAll(async () => {
  env = await busTestEnv(["inventory", "payment"], inject("infra"));
});
afterAll(async () => {
  await env?.cleanup();
});

/** A ReserveStock for `orderId` whose single line's sku carries `n` (to check order). */
function reserve(orderId: string, n: number): OutgoingMessage {
  return {
    subject: `${env.domain("inventory")}.cmd.reserve`,
    key: orderId,
    message: create(ReserveStockSchema, { orderId, lines: [{ sku: String(n), quantity: 1n }] }),
  };
}

async function inTx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await env.pool.connect();
  try {
    await c.query("BEGIN");
    const r = await fn(c);
    await c.query("COMMIT");
    committed(c);
    return r;
  } catch (err) {
    rolledBack(c);
    await c.query("ROLLBACK");
    throw err;
  } finally {
    c.release();
  }
}

async function unpublished(): Promise<number> {
  const r = await env.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.schema}".outbox WHERE published_at IS NULL`);
  return r.rows[0]?.n ?? 0;
}

async function outboxRows(): Promise<number> {
  const r = await env.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.schema}".outbox`);
  return r.rows[0]?.n ?? 0;
}

/** Bus messages in the stream (a bundle counts its entries). */
async function streamCount(): Promise<number> {
  return (await readBusMessages(env.jsm, env.stream("inventory"))).length;
}

async function clear(): Promise<void> {
  await env.pool.query(`DELETE FROM "${env.schema}".outbox`);
  await env.jsm.streams.purge(env.stream("inventory"));
}

/** With a clean outbox and stream, runs `body` while a relay with `options` leads; then stops it. */
async function whileLeading(options: Partial<OutboxRelayOptions>, body: (relay: OutboxRelay) => Promise<void>): Promise<void> {
  await clear();
  const relay = new OutboxRelay({ pool: env.pool, schema: env.schema, publisher: env.publisher, ...options }).start();
  try {
    await waitFor(() => relay.isLeader, 3000, "leader");
    await body(relay);
  } finally {
    await relay.stop();
  }
}

function duplicatesCounted(): Promise<number> {
  return counted(busMetrics.outboxDuplicates, { schema: env.schema });
}

describe("outbox backlog", () => {
  const backlog = async (countedUpTo: number): Promise<number> =>
    (await env.pool.query<{ n: number }>(outboxBacklogSql(`"${env.schema}"`), [countedUpTo])).rows[0]?.n ?? -1;

  it("counts the unpublished rows up to a bound, and past it reads the span of their ids", async () => {
    await clear();
    expect(await backlog(100)).toBe(0);
    await inTx((c) => enqueueOutbox(c, env.schema, Array.from({ length: 30 }, (_, i) => reserve(`o-${i}`, i))));
    // Ten in the middle published: 20 left, spread over the ids of all 30.
    await env.pool.query(`UPDATE "${env.schema}".outbox SET published_at = now() WHERE id IN (SELECT id FROM "${env.schema}".outbox ORDER BY id OFFSET 10 LIMIT 10)`);
    expect(await backlog(100)).toBe(20);
    expect(await backlog(20)).toBe(20);
    expect(await backlog(19)).toBe(30);
    await clear();
  });
});

describe("outbox + relay", () => {
  it("publishes rows one by one (bundleMax 1) with msgID, type, key and traceparent; a second publish of the same rows is dropped by JetStream", async () => {
    await clear();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const ctx = trace.setSpanContext(context.active(), { traceId, spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED });
    const ids = await context.with(ctx, () => inTx((c) => enqueueOutbox(c, env.schema, [reserve("o-1", 1), reserve("o-1", 2), reserve("o-2", 3)])));
    expect(ids).toHaveLength(3);

    const relay = new OutboxRelay({ pool: env.pool, schema: env.schema, publisher: env.publisher, pollMs: 100, bundleMax: 1, retentionMs: 60 * 60 * 1000 }).start();
    try {
      await waitFor(async () => (await unpublished()) === 0, 5000, "rows published");
      const msgs = await readStream(env.jsm, env.stream("inventory"));
      expect(msgs.map((m) => m.header.get(Header.msgId))).toEqual(ids);
      expect(msgs.map((m) => m.header.get(Header.id))).toEqual(ids);
      expect(msgs.map((m) => m.header.get(Header.key))).toEqual(["o-1", "o-1", "o-2"]);
      expect(msgs[0]?.header.get(Header.type)).toBe("orderflow.inventory.v1.ReserveStock");
      expect(msgs[0]?.header.get("traceparent")).toContain(traceId);
      expect(msgs.map((m) => fromBinary(ReserveStockSchema, m.data).lines[0]?.sku)).toEqual(["1", "2", "3"]);
      expect(await counted(busMetrics.outboxPublished, { schema: env.schema })).toBe(3);
      await waitFor(async () => (await busMetrics.outboxBacklog.get()).values.find((v) => v.labels["schema"] === env.schema)?.value === 0, 3000, "backlog gauge 0");

      // Simulate a relay that crashed after publishing but before committing: rows unpublished again.
      const before = await duplicatesCounted();
      await env.pool.query(`UPDATE "${env.schema}".outbox SET published_at = NULL`);
      await waitFor(async () => (await unpublished()) === 0, 5000, "rows re-published");
      expect(await streamCount()).toBe(3);
      expect((await duplicatesCounted()) - before).toBe(3);
    } finally {
      await relay.stop();
    }
  });

  /**
   * With the inventory stream bounded so that it refuses (about a dozen single messages fit
   * under it; the test's streams keep every message), a relay leading with `options` and 40
   * reserves in the outbox: runs `body` while the stream refuses, then lifts the bound and checks
   * that all 40 are published, each once and in order.
   */
  async function whileInventoryRefuses(options: Partial<OutboxRelayOptions>, body: (relay: OutboxRelay) => Promise<void>): Promise<void> {
    await ensureStreams(env.jsm, [env.domain("inventory")], { dlq: env.dlq, maxBytes: 4_096 });
    try {
      await whileLeading({ pollMs: 100, bundleMax: 1, ...options }, async (relay) => {
        await inTx((c) => enqueueOutbox(c, env.schema, Array.from({ length: 40 }, (_, i) => reserve(`full-${i % 4}`, i))));
        await waitFor(async () => (await unpublished()) > 0 && (await env.jsm.streams.info(env.stream("inventory"))).state.bytes > 3_000, 5000, "the stream at its bound");
        await body(relay);
        await ensureStreams(env.jsm, [env.domain("inventory")], { dlq: env.dlq });
        await waitFor(async () => (await unpublished()) === 0, 5000, "the refused rows published");
        const skus = (await readBusMessages(env.jsm, env.stream("inventory"))).map((m) => fromBinary(ReserveStockSchema, m.data).lines[0]?.sku);
        expect(skus).toEqual(Array.from({ length: 40 }, (_, i) => String(i)));
      });
    } finally {
      await ensureStreams(env.jsm, [env.domain("inventory")], { dlq: env.dlq });
    }
  }

  it("holds its rows while the stream refuses them at its byte bound, keeping its lead and connection, then publishes each once, in order", async () => {
    const relayBackends = async () =>
      (await env.pool.query<{ pid: number }>("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = hashtext($1)::oid AND granted", [`orderflow.outbox.${env.schema}`])).rows.map((r) => r.pid);
    await whileInventoryRefuses({}, async (relay) => {
      const held = await streamCount();
      const leader = await relayBackends();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      // Refused, not dropped: the stream keeps what it has, the outbox the rest; the relay
      // waits on the same connection, the lead its own.
      expect(await streamCount()).toBe(held);
      expect(relay.isLeader).toBe(true);
      expect(await relayBackends()).toEqual(leader);
      expect(leader).toHaveLength(1);
      expect(await unpublished()).toBeGreaterThanOrEqual(40 - held);
    });
  });

  it("while one domain's stream refuses, publishes the other domains' rows on; the held rows follow, each once and in order, once there is room", async () => {
    const charge = (orderId: string, n: number): OutgoingMessage => ({
      subject: `${env.domain("payment")}.cmd.charge`,
      key: orderId,
      message: create(ChargePaymentSchema, { orderId, customerId: String(n) }),
    });
    const unpublishedOf = async (domain: string) =>
      (await env.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.schema}".outbox WHERE published_at IS NULL AND subject LIKE $1`, [`${env.domain(domain)}.%`])).rows[0]?.n ?? 0;
    const charges = async () => (await readBusMessages(env.jsm, env.stream("payment"))).map((m) => fromBinary(ChargePaymentSchema, m.data).customerId);
    await env.jsm.streams.purge(env.stream("payment"));
    // Batches of 10: the refused rows alone would fill every read, were they not held back.
    await whileInventoryRefuses({ batchSize: 10 }, async (relay) => {
      await inTx((c) => enqueueOutbox(c, env.schema, Array.from({ length: 20 }, (_, i) => charge(`pay-${i}`, i))));
      await waitFor(async () => (await unpublishedOf("payment")) === 0, 5000, "the other domain's rows published and marked");
      expect(await charges()).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
      expect(await unpublishedOf("inventory")).toBeGreaterThan(0);
      expect(relay.isLeader).toBe(true);
    });
  });

  it("two relays: one leader at a time, every row published exactly once, per-key order kept across a failover", async () => {
    await clear();
    const a = new OutboxRelay({ pool: env.pool, schema: env.schema, publisher: env.publisher, pollMs: 50, leaderRetryMs: 50, batchSize: 25 }).start();
    const b = new OutboxRelay({ pool: env.pool, schema: env.schema, publisher: env.publisher, pollMs: 50, leaderRetryMs: 50, batchSize: 25 }).start();
    const keys = Array.from({ length: 10 }, (_, i) => `order-${i}`);
    let n = 0;
    const writeRound = async (rounds: number): Promise<void> => {
      // Concurrent writers: each key's messages are written by one writer, in order.
      await Promise.all(
        keys.map(async (key) => {
          for (let r = 0; r < rounds; r++) await inTx((c) => enqueueOutbox(c, env.schema, [reserve(key, n++), reserve(key, n++)]));
        }),
      );
    };
    try {
      await writeRound(10);
      await waitFor(() => a.isLeader || b.isLeader, 3000, "a leader");
      expect(a.isLeader && b.isLeader).toBe(false);
      const leader = a.isLeader ? a : b;
      const standby = leader === a ? b : a;
      await leader.stop();
      await writeRound(10);
      await waitFor(() => standby.isLeader, 3000, "failover");
      await waitFor(async () => (await unpublished()) === 0, 10000, "all rows published");
      const msgs = await readBusMessages(env.jsm, env.stream("inventory"));
      expect(msgs).toHaveLength(400);
      expect(new Set(msgs.map((m) => m.header.get(Header.id))).size).toBe(400);
      const lastByKey = new Map<string, number>();
      for (const m of msgs) {
        const rs = fromBinary(ReserveStockSchema, m.data);
        const seq = Number(rs.lines[0]?.sku);
        expect(seq).toBeGreaterThan(lastByKey.get(rs.orderId) ?? -1);
        lastByKey.set(rs.orderId, seq);
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it("bundles the rows of a subject into one message, keeping each key's order; the same bundle published again is dropped by JetStream", async () => {
    await clear();
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const ctx = trace.setSpanContext(context.active(), { traceId, spanId: "b7ad6b7169203331", traceFlags: TraceFlags.SAMPLED });
    const release = (orderId: string, n: number): OutgoingMessage => ({ ...reserve(orderId, n), subject: `${env.domain("inventory")}.cmd.release` });
    // o-2's release comes between its two reserves: its second reserve cannot join the first bundle.
    const rows = [reserve("o-1", 1), reserve("o-2", 2), release("o-2", 3), reserve("o-1", 4), reserve("o-2", 5)];
    const ids = await context.with(ctx, () => inTx((c) => enqueueOutbox(c, env.schema, rows)));
    const publishAll = async (): Promise<void> => {
      const relay = new OutboxRelay({ pool: env.pool, schema: env.schema, publisher: env.publisher, pollMs: 50, localWake: false, retentionMs: 60 * 60 * 1000 }).start();
      try {
        await waitFor(async () => (await unpublished()) === 0, 5000, "rows published");
      } finally {
        await relay.stop();
      }
    };
    await publishAll();
    const stored = await readStream(env.jsm, env.stream("inventory"));
    expect(stored.map((m) => [m.header.get(Header.type), m.header.get(Header.count)])).toEqual([
      [BUNDLE_TYPE, "3"],
      ["orderflow.inventory.v1.ReserveStock", ""],
      ["orderflow.inventory.v1.ReserveStock", ""],
    ]);
    const messages = await readBusMessages(env.jsm, env.stream("inventory"));
    expect(messages.map((m) => fromBinary(ReserveStockSchema, m.data).lines[0]?.sku)).toEqual(["1", "2", "4", "3", "5"]);
    expect(messages.map((m) => m.header.get(Header.id))).toEqual([ids[0], ids[1], ids[3], ids[2], ids[4]]);
    expect(messages.map((m) => m.header.get(Header.key))).toEqual(["o-1", "o-2", "o-1", "o-2", "o-2"]);
    for (const m of messages) expect(m.header.get("traceparent")).toContain(traceId);

    const duplicatesBefore = await duplicatesCounted();
    await env.pool.query(`UPDATE "${env.schema}".outbox SET published_at = NULL`);
    await publishAll();
    expect(await readStream(env.jsm, env.stream("inventory"))).toHaveLength(3);
    expect((await duplicatesCounted()) - duplicatesBefore).toBe(5);
  });

  it("does not skip a row whose transaction commits after later rows were published (NOTIFY wakes the relay)", async () => {
    await clear();
    // Long poll: only NOTIFY can publish the late row quickly.
    const relay = new OutboxRelay({ pool: env.pool, schema: env.schema, publisher: env.publisher, pollMs: 60_000 }).start();
    const slow = await env.pool.connect();
    try {
      await waitFor(() => relay.isLeader, 3000, "leader");
      await slow.query("BEGIN");
      const [slowId] = await enqueueOutbox(slow, env.schema, [reserve("slow", 1)], { notify: true }); // lower outbox id, uncommitted
      const [fastId] = await inTx((c) => enqueueOutbox(c, env.schema, [reserve("fast", 2)], { notify: true }));
      await waitFor(async () => (await streamCount()) === 1, 3000, "fast row published");
      await slow.query("COMMIT");
      const t0 = Date.now();
      await waitFor(async () => (await streamCount()) === 2, 3000, "slow row published");
      expect(Date.now() - t0).toBeLessThan(2000);
      const msgs = await readStream(env.jsm, env.stream("inventory"));
      expect(msgs.map((m) => m.header.get(Header.msgId))).toEqual([fastId, slowId]);
    } finally {
      slow.release();
      await relay.stop();
    }
  });

  it("with throttled NOTIFYs (default) a burst of concurrent single-row transactions from elsewhere is published promptly", async () => {
    // localWake false: the writers below count as another process's, which only NOTIFY.
    await whileLeading({ pollMs: 60_000, localWake: false }, async () => {
      await Promise.all(Array.from({ length: 200 }, (_, i) => inTx((c) => enqueueOutbox(c, env.schema, [reserve(`burst-${i % 20}`, i)]))));
      await waitFor(async () => (await streamCount()) === 200, 3000, "burst published without the 60 s poll");
    });
  });

  it("rows committed in the leader's process are handed to it: each published once while it also reads, then marked", async () => {
    await whileLeading({ pollMs: 5, busyPollMs: 5, markDelayMs: 20 }, async () => {
      const before = await duplicatesCounted();
      // Concurrent writers while the relay polls every 5 ms: its reads race the hand-overs.
      await Promise.all(Array.from({ length: 200 }, (_, i) => inTx((c) => enqueueOutbox(c, env.schema, [reserve(`race-${i % 20}`, i)]))));
      await waitFor(async () => (await unpublished()) === 0, 5000, "every row marked");
      expect(await streamCount()).toBe(200);
      expect((await duplicatesCounted()) - before).toBe(0);
    });
  });

  it("a rolled-back write hands nothing over", async () => {
    await whileLeading({ pollMs: 60_000, busyPollMs: 60_000 }, async () => {
      await expect(
        inTx(async (c) => {
          await enqueueOutbox(c, env.schema, [reserve("rolled-back", 1)]);
          throw new Error("abort");
        }),
      ).rejects.toThrow("abort");
      await inTx((c) => enqueueOutbox(c, env.schema, [reserve("kept", 2)]));
      await waitFor(async () => (await streamCount()) === 1, 3000, "the committed row published");
      const msgs = await readStream(env.jsm, env.stream("inventory"));
      expect(msgs.map((m) => m.header.get(Header.key))).toEqual(["kept"]);
    });
  });

  it("a commit in the leader's own process reaches it directly: no NOTIFY, no poll needed", async () => {
    await whileLeading({ pollMs: 60_000, busyPollMs: 60_000 }, async () => {
      await waitFor(async () => (await unpublished()) === 0, 3000, "idle relay");
      const c = await env.pool.connect();
      try {
        await c.query("BEGIN");
        await enqueueOutbox(c, env.schema, [reserve("local", 1)], { notify: false });
        await c.query("COMMIT");
        committed(c);
      } finally {
        c.release();
      }
      await waitFor(async () => (await streamCount()) === 1, 3000, "row published without NOTIFY or poll");
    });
  });

  it("while it leads from this process, writers send no NOTIFY and a one-statement write wakes it", async () => {
    const listener = await env.pool.connect();
    await whileLeading({ pollMs: 60_000, busyPollMs: 60_000 }, async () => {
      let notifications = 0;
      listener.on("notification", () => void (notifications += 1));
      await listener.query(`LISTEN "${outboxChannel(env.schema)}"`);
      await inTx((c) => enqueueOutbox(c, env.schema, [reserve("auto", 1)]));
      const insert = outboxInsert(env.schema, [reserve("single", 2)], 1);
      expect(insert.notify).toBeUndefined();
      const written = await env.pool.query<WrittenRow>(insert.sql, insert.values);
      outboxWritten(insert, written.rows);
      await waitFor(async () => (await streamCount()) === 2, 3000, "rows published without NOTIFY or poll");
      await listener.query("SELECT 1"); // a notification sent before this would have arrived by now
      expect(notifications).toBe(0);
    }).finally(() => listener.release());
  });

  it("marks rows handed over without reading the outbox: another process's silent row waits for the poll", async () => {
    await whileLeading({ pollMs: 60_000, busyPollMs: 60_000, markDelayMs: 10 }, async () => {
      // Written as by another process that sends no NOTIFY (neither handed over nor announced).
      const silent = outboxInsert(env.schema, [reserve("silent", 1)], 1);
      await env.pool.query(silent.sql, silent.values);
      await inTx((c) => enqueueOutbox(c, env.schema, [reserve("handed-over", 2)]));
      await waitFor(async () => (await streamCount()) === 1 && (await unpublished()) === 1, 3000, "the handed-over row published and marked");
      await new Promise((resolve) => setTimeout(resolve, 200));
      const msgs = await readStream(env.jsm, env.stream("inventory"));
      expect(msgs.map((m) => m.header.get(Header.key))).toEqual(["handed-over"]);
      expect(await unpublished()).toBe(1);
    });
  });

  it("deletes each row once JetStream has it, by default (no retention)", async () => {
    await whileLeading({}, async () => {
      await inTx((c) => enqueueOutbox(c, env.schema, [reserve("a", 1), reserve("b", 2), reserve("c", 3)]));
      await waitFor(async () => (await streamCount()) === 3 && (await outboxRows()) === 0, 3000, "rows published and deleted");
    });
  });

  it("deletes the published rows past the retention, chunk after chunk until none is left, and keeps the others", async () => {
    await clear();
    const rows = outboxInsert(env.schema, Array.from({ length: 27 }, (_, i) => reserve(`old-${i}`, i)), 1);
    await env.pool.query(rows.sql, rows.values);
    await env.pool.query(`UPDATE "${env.schema}".outbox SET published_at = now() - CASE WHEN id % 9 = 0 THEN interval '10 minutes' ELSE interval '2 hours' END`);
    const recent = Number((await env.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.schema}".outbox WHERE id % 9 = 0`)).rows[0]?.n);
    const relay = new OutboxRelay({ pool: env.pool, schema: env.schema, publisher: env.publisher, retentionMs: 60 * 60 * 1000, cleanupChunk: 10 }).start();
    try {
      await waitFor(async () => (await outboxRows()) === recent, 3000, "expired rows deleted");
    } finally {
      await relay.stop();
    }
    expect(recent).toBe(3);
    expect(await streamCount()).toBe(0);
  });

  it("polls as a backstop when no NOTIFY is sent", async () => {
    await whileLeading({ pollMs: 100 }, async () => {
      await inTx((c) => enqueueOutbox(c, env.schema, [reserve("quiet", 1)], { notify: false }));
      await waitFor(async () => (await streamCount()) === 1, 3000, "row published by polling");
    });
  });
});

describe("the relay's read of the outbox", () => {
  it("skips the rows in flight through a hashed lookup, also in the generic plan of the prepared statement", async () => {
    const schemaSql = quoteSchema(env.schema);
    const c = await env.pool.connect();
    try {
      await c.query("SET plan_cache_mode = force_generic_plan");
      await c.query(`PREPARE relay_read_plan(int, bigint[], bigint[], text[]) AS ${readOutboxSql(schemaSql, markOutboxSql(schemaSql, 0, 3))}`);
      const { rows } = await c.query<{ "QUERY PLAN": string }>("EXPLAIN EXECUTE relay_read_plan(500, '{1,2,3}', '{4}', '{order}')");
      const plan = rows.map((r) => r["QUERY PLAN"]).join("\n");
      // `NOT (id = ANY($2))` shows as a filter `id <> ALL ($2)`: each row compared with every id.
      expect(plan).toMatch(/hashed SubPlan/);
      expect(plan).not.toMatch(/<> ALL/);
    } finally {
      await c.query("DEALLOCATE ALL; RESET plan_cache_mode");
      c.release();
    }
  });
});
