import { create, isMessage } from "@bufbuild/protobuf";
import { context, trace, TraceFlags } from "@opentelemetry/api";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { HealthCheckResponseSchema } from "../../../gen/grpc/health/v1/health_pb.js";
import { ReserveStockSchema, StockReservedSchema } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import type { BusConsumer, Delivery, InboxConsumerOptions } from "./consumer-options.js";
import { startConsumer } from "./consumer.js";
import { listDeadLetters, replayAllDeadLetters, replayDeadLetter } from "./dlq.js";
import { ensureDurableConsumer } from "./durable.js";
import { busMetrics } from "./metrics.js";
import { Header } from "./names.js";
import { busHeaders, publishMessages, type OutgoingMessage } from "./publish.js";
import { publishBundled, receivedEntries } from "./bundle.js";
import { currentTraceHeaders } from "./trace.js";
import { busTestEnv, counted, type BusTestEnv, natsLink, readStream, useTraceContext, waitFor } from "./testkit.js";

process.env["LOG_LEVEL"] ??= "error";
useTraceContext();

let env: BusTestEnv;
beforeAll(async () => {
  env = await busTestEnv(["inventory"], inject("infra"));
  await env.pool.query(`CREATE TABLE "${env.schema}".effects (consumer text NOT NULL, order_id text NOT NULL, txid bigint NOT NULL)`);
});
afterAll(async () => {
  await env?.cleanup();
});

const subject = (name: string): string => `${env.domain("inventory")}.cmd.${name}`;

function reserve(subj: string, id: string, orderId: string): OutgoingMessage {
  return { subject: subj, id, key: orderId, message: create(ReserveStockSchema, { orderId, lines: [{ sku: "sku-1", quantity: 2n }] }) };
}

/** Raw publish with bus headers but arbitrary bytes / type (for poison messages). */
async function publishRaw(subj: string, id: string, type: string, data: Uint8Array, msgID = id): Promise<void> {
  const headers = busHeaders({ type, id });
  if (type === "") headers.delete(Header.type);
  await env.js.publish(subj, data, { msgID, headers });
}

/** Handler that records the order id and the transaction id of its effect. */
function recordEffect(consumer: string, fail?: (d: Delivery) => boolean) {
  return async (d: Delivery, tx: { query: (sql: string, params: unknown[]) => Promise<unknown> }): Promise<void> => {
    if (!isMessage(d.message, ReserveStockSchema)) throw new Error(`unexpected ${d.type}`);
    if (fail?.(d)) throw new Error(`boom: cannot reserve for ${d.message.orderId}`);
    await tx.query(`INSERT INTO "${env.schema}".effects (consumer, order_id, txid) VALUES ($1, $2, txid_current())`, [consumer, d.message.orderId]);
  };
}

async function effects(consumer: string): Promise<{ order_id: string; txid: string }[]> {
  const r = await env.pool.query<{ order_id: string; txid: string }>(`SELECT order_id, txid FROM "${env.schema}".effects WHERE consumer = $1`, [consumer]);
  return r.rows;
}

async function settled(durable: string): Promise<boolean> {
  const info = await env.jsm.consumers.info(env.stream("inventory"), durable);
  return info.num_ack_pending === 0 && info.num_pending === 0;
}

/** Consumer `durable` of `subj` on the test's inventory stream, with the test's schema and (unless `options` give one) pool. */
function consume(durable: string, subj: string, options: Omit<InboxConsumerOptions, "js" | "schema" | "stream" | "durable" | "filterSubject" | "pool"> & { pool?: pg.Pool }): Promise<BusConsumer> {
  return startConsumer({ js: env.js, pool: env.pool, schema: env.schema, stream: env.stream("inventory"), durable, filterSubject: subj, ...options });
}

const metric = (consumer: string, outcome: string): Promise<number> => counted("orderflow_bus_messages_total", { consumer, outcome });

describe("inbox consumer", () => {
  it("applies a batch in one transaction: inbox rows + effects commit together, then all are acked", async () => {
    const subj = subject("batch");
    const traceId = "5bf92f3577b34da6a3ce929d0e0e4736";
    const ctx = trace.setSpanContext(context.active(), { traceId, spanId: "a7ad6b7169203331", traceFlags: TraceFlags.SAMPLED });
    await context.with(ctx, () => publishMessages(env.js, Array.from({ length: 60 }, (_, i) => reserve(subj, `batch-${i}`, `o-${i}`))));
    const record = recordEffect("batch");
    const c = await consume("batch", subj, {
      batchSize: 30,
      handle: async (d, tx, out) => {
        await record(d, tx);
        out.emit({ subject: `${env.domain("inventory")}.evt.reserved`, key: d.key, message: create(StockReservedSchema, { orderId: d.key }) });
      },
    });
    try {
      await waitFor(async () => (await effects("batch")).length === 60, 5000, "60 effects");
      // Replies emitted through `out` are in the outbox, in message order, committed with the effects.
      const outbox = await env.pool.query<{ key: string; traceparent: string | null }>(
        `SELECT key, headers->>'traceparent' AS traceparent FROM "${env.schema}".outbox WHERE subject LIKE '%.evt.reserved' ORDER BY id`,
      );
      expect(outbox.rows.map((r) => r.key)).toEqual(Array.from({ length: 60 }, (_, i) => `o-${i}`));
      // Each reply continues the trace of the message it answers.
      expect(new Set(outbox.rows.map((r) => r.traceparent?.split("-")[1]))).toEqual(new Set([traceId]));
      const txids = new Set((await effects("batch")).map((e) => e.txid));
      expect(txids.size).toBeLessThanOrEqual(4); // 60 messages in ~2 batches of 30 (the first may be split)
      const inbox = await env.pool.query(`SELECT 1 FROM "${env.schema}".inbox WHERE consumer = 'batch'`);
      expect(inbox.rowCount).toBe(60);
      await waitFor(() => settled("batch"), 5000, "all acked");
    } finally {
      await c.stop();
    }
  });

  it("has one effect per message id: duplicate in a batch, a later re-publish, and a redelivery after a lost ack", async () => {
    const subj = subject("dup");
    const c = await consume("dup", subj, { batchSize: 20, handle: recordEffect("dup") });
    try {
      // A redelivery after a lost ack: the inbox already holds the id (the effect committed before).
      await env.pool.query(`INSERT INTO "${env.schema}".inbox (consumer, message_id) VALUES ('dup', 'dup-3')`);
      const [m1, m2, m3] = [reserve(subj, "dup-1", "d-1"), reserve(subj, "dup-2", "d-2"), reserve(subj, "dup-3", "d-3")];
      if (!m1 || !m2 || !m3) throw new Error("unreachable");
      // Same message id published twice (as after JetStream's duplicate window): different msgID, same of-id.
      await publishMessages(env.js, [m1, m2, m3]);
      const again = busHeaders({ type: "orderflow.inventory.v1.ReserveStock", id: "dup-1" });
      await env.js.publish(subj, (await import("@bufbuild/protobuf")).toBinary(ReserveStockSchema, create(ReserveStockSchema, { orderId: "d-1" })), { msgID: "dup-1:again", headers: again });
      await waitFor(() => settled("dup"), 5000, "first wave acked");
      await publishMessages(env.js, [{ ...m2, id: "dup-2" }]); // de-duplicated by JetStream (same msgID)
      const h = busHeaders({ type: "orderflow.inventory.v1.ReserveStock", id: "dup-2" });
      await env.js.publish(subj, (await import("@bufbuild/protobuf")).toBinary(ReserveStockSchema, create(ReserveStockSchema, { orderId: "d-2" })), { msgID: "dup-2:later", headers: h });
      await waitFor(async () => (await metric("dup", "duplicate")) >= 3, 5000, "duplicates seen");
      await waitFor(() => settled("dup"), 5000, "all acked");
      const rows = (await effects("dup")).map((e) => e.order_id).sort();
      expect(rows).toEqual(["d-1", "d-2"]);
    } finally {
      await c.stop();
    }
  });

  it("with inbox: false hands every delivery to the handler in the batch transaction and writes no inbox row", async () => {
    const subj = subject("noinbox");
    const c = await consume("noinbox", subj, {
      inbox: false,
      batchSize: 20,
      handle: recordEffect("noinbox"),
    });
    try {
      await publishMessages(env.js, [reserve(subj, "noinbox-1", "n-1"), reserve(subj, "noinbox-2", "n-2")]);
      // Wait for them: an id met twice within one batch is handled once, and this test is about a later batch.
      await waitFor(async () => (await effects("noinbox")).length === 2, 5000, "two effects");
      // The same message id again past JetStream's duplicate window: handled again (the handler's keys must make it a no-op).
      const again = busHeaders({ type: "orderflow.inventory.v1.ReserveStock", id: "noinbox-1" });
      await env.js.publish(subj, (await import("@bufbuild/protobuf")).toBinary(ReserveStockSchema, create(ReserveStockSchema, { orderId: "n-1" })), { msgID: "noinbox-1:again", headers: again });
      await waitFor(async () => (await effects("noinbox")).length === 3, 5000, "three effects");
      await waitFor(() => settled("noinbox"), 5000, "all acked");
      expect((await effects("noinbox")).map((e) => e.order_id).sort()).toEqual(["n-1", "n-1", "n-2"]);
      expect((await env.pool.query(`SELECT 1 FROM "${env.schema}".inbox WHERE consumer = 'noinbox'`)).rowCount).toBe(0);
      expect(await metric("noinbox", "duplicate")).toBe(0);
    } finally {
      await c.stop();
    }
  });

  it("sends poison messages to the DLQ with their metadata and keeps processing; replay re-drives them once fixed", async () => {
    const subj = subject("poison");
    let fixed = false;
    const c = await consume("poison", subj, {
      batchSize: 20,
      maxDeliver: 3,
      backoffMs: [50, 100],
      dlq: env.dlq,
      handle: recordEffect("poison", (d) => isMessage(d.message, ReserveStockSchema) && d.message.orderId === "p-poison" && !fixed),
    });
    try {
      await publishMessages(env.js, [reserve(subj, "ok-1", "p-1")]);
      await publishRaw(subj, "bad-bytes", "orderflow.inventory.v1.ReserveStock", new Uint8Array([0x0a, 0x05, 0x61]));
      await publishRaw(subj, "bad-type", "orderflow.nope.v1.Unknown", new Uint8Array([]));
      await publishMessages(env.js, [reserve(subj, "poison-1", "p-poison"), reserve(subj, "ok-2", "p-2"), reserve(subj, "ok-3", "p-3")]);

      await waitFor(async () => (await effects("poison")).length === 3, 5000, "good messages processed");
      await waitFor(async () => (await listDeadLetters(env.jsm, { dlq: env.dlq })).length === 3, 5000, "3 dead letters");
      const dead = await listDeadLetters(env.jsm, { dlq: env.dlq });
      const poison = dead.find((dl) => dl.messageId === "poison-1");
      expect(poison).toMatchObject({ subject: subj, type: "orderflow.inventory.v1.ReserveStock", deliveries: 3, consumer: "poison", stream: env.stream("inventory") });
      expect(poison?.error).toContain("boom");
      expect(poison?.headers[Header.id]).toEqual(["poison-1"]);
      expect(poison?.headers[Header.msgId]).toEqual(["poison-1"]);
      const badBytes = dead.find((dl) => dl.messageId === "bad-bytes");
      expect(badBytes).toMatchObject({ deliveries: 1, subject: subj });
      expect(badBytes?.error).toContain("cannot decode");
      expect(dead.find((dl) => dl.messageId === "bad-type")?.error).toContain("unknown message type");
      const dlqMsgs = await env.jsm.streams.info(env.dlq.stream);
      expect(dlqMsgs.state.messages).toBe(3);
      const deadCount = (reason: string): Promise<number> => counted(busMetrics.deadLetters, { consumer: "poison", reason });
      expect([await deadCount("undecodable"), await deadCount("handler_failed")]).toEqual([2, 1]);
      expect(await metric("poison", "retried")).toBe(2);
      expect(await counted(busMetrics.redeliveries, { consumer: "poison" })).toBe(2);

      // The consumer carries on.
      await publishMessages(env.js, [reserve(subj, "ok-4", "p-4")]);
      await waitFor(async () => (await effects("poison")).length === 4, 5000, "later message processed");
      await waitFor(() => settled("poison"), 5000, "nothing pending");

      // Fix the cause, replay: processed once, gone from the DLQ.
      fixed = true;
      if (!poison) throw new Error("unreachable");
      await replayDeadLetter(env.js, env.jsm, poison.seq, env.dlq);
      await waitFor(async () => (await effects("poison")).some((e) => e.order_id === "p-poison"), 5000, "replayed message processed");
      expect((await listDeadLetters(env.jsm, { dlq: env.dlq })).map((dl) => dl.messageId).sort()).toEqual(["bad-bytes", "bad-type"]);
      await expect(replayDeadLetter(env.js, env.jsm, poison.seq, env.dlq)).rejects.toThrow(/no dead letter/);
      // A second copy of the replay (same of-id) has no effect.
      await publishRaw(subj, "poison-1", "orderflow.inventory.v1.ReserveStock", (await import("@bufbuild/protobuf")).toBinary(ReserveStockSchema, create(ReserveStockSchema, { orderId: "p-poison" })), "poison-1:replay:again");
      await waitFor(() => settled("poison"), 5000, "settled");
      expect((await effects("poison")).filter((e) => e.order_id === "p-poison")).toHaveLength(1);

      // Still-broken messages replayed go back to the DLQ.
      const replayed = await replayAllDeadLetters(env.js, env.jsm, env.dlq);
      expect(replayed).toHaveLength(2);
      await waitFor(async () => (await listDeadLetters(env.jsm, { dlq: env.dlq })).length === 2, 5000, "back in the DLQ");
      expect((await listDeadLetters(env.jsm, { dlq: env.dlq })).every((dl) => dl.seq > poison.seq)).toBe(true);
    } finally {
      await c.stop();
    }
  });

  it("hands a bundle's entries over as deliveries of their own; a failing entry sends its bundle back (the others are not applied again) and goes to the DLQ alone", async () => {
    const subj = subject("bundled");
    const c = await consume("bundled", subj, {
      batchSize: 20,
      maxDeliver: 3,
      backoffMs: [50, 100],
      dlq: env.dlq,
      handle: recordEffect("bundled", (d) => isMessage(d.message, ReserveStockSchema) && d.message.orderId === "b-poison"),
    });
    const traceId = "5bf92f3577b34da6a3ce929d0e0e4736";
    const ctx = trace.setSpanContext(context.active(), { traceId, spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED });
    try {
      const stored = (await env.jsm.streams.info(env.stream("inventory"))).state.last_seq;
      await context.with(ctx, () =>
        publishBundled(env.publisher, [
          { ...reserve(subj, "b-1", "b-order-1"), headers: currentTraceHeaders() },
          { ...reserve(subj, "b-poison", "b-poison"), headers: currentTraceHeaders() },
          { ...reserve(subj, "b-2", "b-order-2"), headers: currentTraceHeaders() },
        ]),
      );
      expect((await env.jsm.streams.info(env.stream("inventory"))).state.last_seq).toBe(stored + 1);

      await waitFor(async () => (await listDeadLetters(env.jsm, { dlq: env.dlq })).some((dl) => dl.consumer === "bundled"), 5000, "the failing entry dead-lettered");
      await waitFor(() => settled("bundled"), 5000, "the bundle acked");
      expect((await effects("bundled")).map((e) => e.order_id).sort()).toEqual(["b-order-1", "b-order-2"]);
      expect(await metric("bundled", "processed")).toBe(2);
      expect(await metric("bundled", "duplicate")).toBe(4);
      const dead = (await listDeadLetters(env.jsm, { dlq: env.dlq })).filter((dl) => dl.consumer === "bundled");
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ messageId: "b-poison", type: "orderflow.inventory.v1.ReserveStock", subject: subj, deliveries: 3 });
      expect(dead[0]?.headers[Header.key]).toEqual(["b-poison"]);
      expect(dead[0]?.headers["traceparent"]?.[0]).toContain(traceId);
    } finally {
      await c.stop();
    }
  });

  it("takes bundles far larger than its batch: 3 bundles of 64 entries of ~2 KB each, with batchSize 10", async () => {
    const subj = subject("large");
    const c = await consume("large", subj, {
      batchSize: 10,
      inbox: false,
      handle: recordEffect("large"),
    });
    try {
      const lines = Array.from({ length: 60 }, (_, i) => ({ sku: `sku-with-a-long-name-${i}`, quantity: 1n }));
      const messages = Array.from({ length: 192 }, (_, i): OutgoingMessage => ({ subject: subj, id: `large-${i}`, key: `large-${i}`, message: create(ReserveStockSchema, { orderId: `large-${i}`, lines }) }));
      await publishBundled(env.publisher, messages);
      await waitFor(async () => (await effects("large")).length === 192, 10_000, "every entry handled");
      await waitFor(() => settled("large"), 5000, "every bundle acked");
    } finally {
      await c.stop();
    }
  });

  it("dead-letters, one by one and without handling them, the entries of a bundle whose last delivery did not finish", async () => {
    const subj = subject("crashed");
    await ensureDurableConsumer(env.js, { stream: env.stream("inventory"), durable: "crashed", filterSubject: subj, ackWaitMs: 10_000, maxDeliver: 8, maxAckPending: 100 });
    await publishBundled(env.publisher, [reserve(subj, "cr-1", "cr-order-1"), reserve(subj, "cr-2", "cr-order-2")]);
    // Delivered twice to consumers that died before they finished (a nak stands in for the lost ack wait).
    const raw = await env.js.consumers.get(env.stream("inventory"), "crashed");
    for (let i = 0; i < 2; i++) {
      const m = await raw.next({ expires: 2000 });
      if (!m) throw new Error("the bundle was not delivered");
      m.nak();
    }
    let handled = 0;
    const c = await consume("crashed", subj, {
      maxDeliver: 2,
      dlq: env.dlq,
      handle: async () => {
        handled += 1;
      },
    });
    try {
      await waitFor(async () => (await listDeadLetters(env.jsm, { dlq: env.dlq })).filter((dl) => dl.consumer === "crashed").length === 2, 5000, "both entries dead-lettered");
      await waitFor(() => settled("crashed"), 5000, "the bundle settled");
      const dead = (await listDeadLetters(env.jsm, { dlq: env.dlq })).filter((dl) => dl.consumer === "crashed");
      expect(dead.map((dl) => [dl.messageId, dl.type, dl.deliveries])).toEqual([
        ["cr-1", "orderflow.inventory.v1.ReserveStock", 3],
        ["cr-2", "orderflow.inventory.v1.ReserveStock", 3],
      ]);
      expect(dead[0]?.error).toContain("did not finish");
      expect(handled).toBe(0);
      expect(await counted(busMetrics.deadLetters, { consumer: "crashed", reason: "max_deliveries" })).toBe(2);
    } finally {
      await c.stop();
    }
  });

  it("signals progress for a slow batch and what waits behind it: nothing is redelivered within a 1 s ack wait", async () => {
    const subj = subject("slow");
    await publishMessages(env.js, Array.from({ length: 3 }, (_, i) => reserve(subj, `slow-${i}`, `sl-${i}`)));
    const record = recordEffect("slow");
    const c = await consume("slow", subj, {
      batchSize: 2,
      ackWaitMs: 1000,
      handle: async (d, tx) => {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        await record(d, tx);
      },
    });
    try {
      // ~3 s of work, each message held 1–3 s: without progress signals JetStream redelivers them.
      await waitFor(async () => (await effects("slow")).length === 3, 10_000, "3 effects");
      await waitFor(() => settled("slow"), 5000, "all acked");
      // Redelivered copies would arrive (delivery count 2) and be counted as duplicates.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await counted(busMetrics.redeliveries, { consumer: "slow" })).toBe(0);
      expect(await metric("slow", "duplicate")).toBe(0);
      expect(await counted(busMetrics.progressSignals, { consumer: "slow" })).toBeGreaterThan(0);
      expect((await effects("slow")).length).toBe(3);
    } finally {
      await c.stop();
    }
  });

  it("with a small prefetch, bundles waiting behind slow batches are not redelivered within a 1 s ack wait", async () => {
    const subj = subject("slow-bundles");
    for (let b = 0; b < 6; b++) await publishBundled(env.js, Array.from({ length: 3 }, (_, i) => reserve(subj, `sb-${b}-${i}`, `sb-${b}-${i}`)));
    const handled: string[] = [];
    const c = await startConsumer({
      js: env.js,
      stream: env.stream("inventory"),
      durable: "slow-bundles",
      filterSubject: subj,
      batchSize: 2,
      prefetch: 1,
      ackWaitMs: 1000,
      parallel: true,
      dlq: env.dlq,
      handle: async (d) => {
        await new Promise((resolve) => setTimeout(resolve, 500));
        handled.push(d.id);
      },
    });
    try {
      // One bundle per batch, 0.5 s each: with 2 × batchSize fetched ahead (the default), the
      // last bundles wait in nats.js, unsignalled, past the ack wait and come back (3 of them here).
      await waitFor(() => handled.length >= 18, 10_000, "18 entries handled");
      await waitFor(() => settled("slow-bundles"), 5000, "all acked");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await counted(busMetrics.redeliveries, { consumer: "slow-bundles" })).toBe(0);
      expect(handled).toHaveLength(18);
    } finally {
      await c.stop();
    }
  });

  it("stops gracefully: finishes the batch in flight, hands back the rest", async () => {
    const subj = subject("stop");
    await publishMessages(env.js, Array.from({ length: 6 }, (_, i) => reserve(subj, `stop-${i}`, `s-${i}`)));
    let started = 0;
    const slow = recordEffect("stop");
    const opts = { js: env.js, pool: env.pool, schema: env.schema, stream: env.stream("inventory"), durable: "stop", filterSubject: subj, batchSize: 3, ackWaitMs: 1000 } as const;
    const c = await startConsumer({
      ...opts,
      handle: async (d: Delivery, tx: pg.PoolClient) => {
        started++;
        await new Promise((r) => setTimeout(r, 100));
        await slow(d, tx);
      },
    });
    await waitFor(() => started > 0, 5000, "a batch in flight");
    await c.stop();
    const done = (await effects("stop")).length;
    expect(done).toBeGreaterThan(0);
    expect(done).toBe(started); // every handler that started committed
    const c2 = await startConsumer({ ...opts, handle: slow });
    try {
      await waitFor(async () => (await effects("stop")).length === 6, 10000, "the rest processed after restart");
      await waitFor(() => settled("stop"), 5000, "all acked");
      expect(new Set((await effects("stop")).map((e) => e.order_id)).size).toBe(6);
    } finally {
      await c2.stop();
    }
  });

  it("fails only the message whose handler emitted what cannot be sent; the rest of its batch commits and publishes", async () => {
    const subj = subject("emit-unsendable-batch");
    const replies = `${env.domain("inventory")}.evt.batch-emitted`;
    const c = await consume("emit-unsendable-batch", subj, {
      inbox: false,
      batchSize: 3,
      maxDeliver: 1,
      publishEmitted: env.publisher,
      dlq: env.dlq,
      handle: async (d, _tx, out) =>
        d.id === "batch-odd"
          ? out.emit({ subject: replies, id: `${d.id}:reply`, key: d.key, message: create(HealthCheckResponseSchema, {}) })
          : out.emit({ subject: replies, id: `${d.id}:reply`, key: d.key, message: create(StockReservedSchema, { orderId: d.key }) }),
    });
    try {
      await publishBundled(env.js, [reserve(subj, "batch-1", "w-1"), reserve(subj, "batch-odd", "w-odd"), reserve(subj, "batch-2", "w-2")]);
      await waitFor(() => settled("emit-unsendable-batch"), 10_000, "all settled");
      const stored = (await readStream(env.jsm, env.stream("inventory"))).filter((m) => m.subject === replies);
      const ids = stored.flatMap((m) => receivedEntries(m.header, m.data, { stream: env.stream("inventory"), seq: m.seq }).map((e) => e.id));
      expect(ids.sort()).toEqual(["batch-1:reply", "batch-2:reply"]);
      const deadLettered = (await listDeadLetters(env.jsm, { dlq: env.dlq })).map((dl) => dl.messageId);
      expect(deadLettered).toContain("batch-odd");
      expect(deadLettered).not.toContain("batch-1");
      expect(deadLettered).not.toContain("batch-2");
    } finally {
      await c.stop();
    }
  });
});

/** How many times the connection has reconnected so far. */
function reconnections(nc: NatsConnection): () => number {
  let count = 0;
  void (async () => {
    for await (const status of nc.status()) if (status.type === "reconnect") count += 1;
  })();
  return () => count;
}

/** A pool whose connections are refused (ECONNREFUSED) while `refusing` says so; it counts the attempts. */
class RefusingPool extends pg.Pool {
  attempts = 0;

  constructor(
    config: pg.PoolConfig,
    private readonly refusing: () => boolean,
  ) {
    super(config);
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(callback: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void): void;
  override connect(callback?: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void): Promise<pg.PoolClient> | void {
    if (callback) return super.connect(callback);
    this.attempts++;
    if (this.refusing()) return Promise.reject(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }));
    return super.connect();
  }
}

describe("database outage", () => {
  it("holds messages while Postgres is unreachable instead of spending deliveries or dead-lettering them", async () => {
    const subj = subject("outage");
    // ~2–3 s of refusals (backoff 50 ms doubling), longer than the 1 s ack wait below.
    let refusals = 7;
    const pool = new RefusingPool({ connectionString: env.databaseUrl, max: 4 }, () => refusals-- > 0);
    const c = await consume("outage", subj, { pool, maxDeliver: 1, ackWaitMs: 1000, dlq: env.dlq, handle: recordEffect("outage") });
    try {
      await publishMessages(env.js, [reserve(subj, "outage-1", "u-1"), reserve(subj, "outage-2", "u-2")]);
      await waitFor(async () => (await effects("outage")).length === 2, 15_000, "processed after the outage");
      expect(refusals).toBeLessThan(0);
      expect((await listDeadLetters(env.jsm, { dlq: env.dlq })).filter((dl) => dl.consumer === "outage")).toEqual([]);
      await waitFor(() => settled("outage"), 5000, "acked");
      expect((await env.jsm.consumers.info(env.stream("inventory"), "outage")).num_redelivered).toBe(0);
      // Held through the outage by progress signals: no copy came back.
      expect(await counted(busMetrics.redeliveries, { consumer: "outage" })).toBe(0);
    } finally {
      await c.stop();
      await pool.end();
    }
  });

  /**
   * Holds a consumer's first batch (`batchSize` 2) through a Postgres outage while `during` runs,
   * then counts the messages JetStream has delivered and not yet seen acked 200 ms after that
   * batch went through (its handler slow once Postgres is back, so that what was sent is still
   * to be handled), and waits for all 80 to be applied.
   */
  async function outstandingAfterOutage(name: string, js: JetStreamClient, during: () => Promise<void>): Promise<number> {
    const subj = subject(name);
    let refusing = true;
    const pool = new RefusingPool({ connectionString: env.databaseUrl, max: 4 }, () => refusing);
    const record = recordEffect(name);
    const handle: typeof record = async (d, tx) => {
      await sleep(25);
      await record(d, tx);
    };
    const c = await startConsumer({ js, pool, schema: env.schema, stream: env.stream("inventory"), durable: name, filterSubject: subj, batchSize: 2, maxDeliver: 5, dlq: env.dlq, handle });
    try {
      await publishMessages(env.js, Array.from({ length: 80 }, (_, i) => reserve(subj, `${name}-${i}`, `${name}-order-${i}`)));
      await waitFor(async () => pool.attempts >= 1, 5_000, "the first batch held");
      await during();
      refusing = false;
      await waitFor(async () => (await effects(name)).length >= 2, 10_000, "the held batch applied");
      await sleep(200);
      const { num_ack_pending: outstanding } = await env.jsm.consumers.info(env.stream("inventory"), name);
      await waitFor(async () => (await effects(name)).length === 80, 20_000, "all applied");
      return outstanding;
    } finally {
      await c.stop();
      await pool.end();
    }
  }

  it("asks for no more than its prefetch through a long outage: nats.js's heartbeat monitor rests while the pump waits", async () => {
    // Six heartbeats' worth of the pump waiting on the held batch.
    const outstanding = await outstandingAfterOutage("outage-long", env.js, () => sleep(6_000));
    // The batch in hand, the queue and nats.js's prefetch (2 × batchSize), 5 here; with a
    // full-prefetch pull for every missed heartbeat, 25–29.
    expect(outstanding).toBeLessThanOrEqual(12);
  });

  it("keeps its heartbeat monitor at rest through a NATS reconnect during a long outage (nats.js restarts it on reconnecting)", async () => {
    const link = await natsLink(env.natsUrl);
    const nc = await connect({ servers: link.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    const reconnected = reconnections(nc);
    try {
      const outstanding = await outstandingAfterOutage("outage-reconnect", jetstream(nc), async () => {
        await sleep(2_500);
        await link.cut();
        await sleep(500);
        await link.restore();
        await waitFor(() => reconnected() === 1, 10_000, "the client reconnected");
        // Six heartbeats' worth after the reconnect, the pump still waiting on the held batch.
        await sleep(6_000);
      });
      // The held batch, the queue, nats.js's prefetch and the reconnect's one fresh pull, 8–9
      // here; with the monitor left running after the reconnect, a full-prefetch pull for each
      // missed beat, 29–44.
      expect(outstanding).toBeLessThanOrEqual(12);
    } finally {
      await nc.close();
      await link.close();
    }
  });

  it("hands its held messages back when stopped during an outage, without trying each against the database; all applied once Postgres is back", async () => {
    const subj = subject("outage-stop");
    let refusing = true;
    const pool = new RefusingPool({ connectionString: env.databaseUrl, max: 4 }, () => refusing);
    const options = { js: env.js, pool, schema: env.schema, stream: env.stream("inventory"), durable: "outage-stop", filterSubject: subj, maxDeliver: 5, ackWaitMs: 1000, dlq: env.dlq, handle: recordEffect("outage-stop") };
    const c = await startConsumer(options);
    await publishMessages(env.js, [reserve(subj, "outage-stop-1", "u-1"), reserve(subj, "outage-stop-2", "u-2"), reserve(subj, "outage-stop-3", "u-3")]);
    await waitFor(async () => pool.attempts >= 3, 10_000, "held through refusals");
    const atStop = pool.attempts;
    await c.stop();
    // At most the retry the stop interrupted: not one transaction per message against a database that may not answer.
    expect(pool.attempts - atStop).toBeLessThanOrEqual(1);
    expect((await listDeadLetters(env.jsm, { dlq: env.dlq })).filter((dl) => dl.consumer === "outage-stop")).toEqual([]);
    refusing = false;
    const again = await startConsumer(options);
    try {
      await waitFor(async () => (await effects("outage-stop")).length === 3, 15_000, "applied after the restart");
    } finally {
      await again.stop();
      await pool.end();
    }
  });

  it("holds a direct consumer's message while its handler finds the database unreachable", async () => {
    const subj = subject("direct-outage");
    let refusals = 7;
    const handled: string[] = [];
    const c = await startConsumer({
      js: env.js,
      stream: env.stream("inventory"),
      durable: "direct-outage",
      filterSubject: subj,
      maxDeliver: 1,
      ackWaitMs: 1000,
      dlq: env.dlq,
      parallel: true,
      handle: async (d) => {
        if (refusals-- > 0) throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
        handled.push(d.id);
      },
    });
    try {
      await publishMessages(env.js, [reserve(subj, "direct-outage-1", "v-1")]);
      await waitFor(() => handled.length === 1, 15_000, "handled after the outage");
      expect(refusals).toBeLessThan(0);
      await waitFor(() => settled("direct-outage"), 5000, "acked");
      expect((await listDeadLetters(env.jsm, { dlq: env.dlq })).filter((dl) => dl.consumer === "direct-outage")).toEqual([]);
      expect(await counted(busMetrics.redeliveries, { consumer: "direct-outage" })).toBe(0);
      expect(handled).toEqual(["direct-outage-1"]);
    } finally {
      await c.stop();
    }
  });
});

describe("direct consumer (no Postgres)", () => {
  it("calls the handler without a transaction, acks, retries and dead-letters", async () => {
    const subj = subject("direct");
    const seen: string[] = [];
    const traces: string[] = [];
    let failures = 0;
    const c = await startConsumer({
      js: env.js,
      stream: env.stream("inventory"),
      durable: "direct",
      filterSubject: subj,
      maxDeliver: 2,
      backoffMs: [20],
      parallel: true,
      dlq: env.dlq,
      handle: async (d) => {
        if (d.id === "direct-bad") {
          failures++;
          throw new Error("always fails");
        }
        seen.push(d.id);
        traces.push(trace.getActiveSpan()?.spanContext().traceId ?? "");
      },
    });
    try {
      const traceId = "0af7651916cd43dd8448eb211c80319c";
      const ctx = trace.setSpanContext(context.active(), { traceId, spanId: "b7ad6b7169203331", traceFlags: TraceFlags.SAMPLED });
      await context.with(ctx, () => publishMessages(env.js, [reserve(subj, "direct-1", "x-1"), reserve(subj, "direct-bad", "x-bad"), reserve(subj, "direct-2", "x-2")]));
      await waitFor(() => seen.length === 2, 5000, "good ones handled");
      expect(traces).toEqual([traceId, traceId]); // handlers run in the publisher's trace
      await waitFor(async () => (await listDeadLetters(env.jsm, { dlq: env.dlq })).some((dl) => dl.messageId === "direct-bad"), 5000, "dead letter");
      expect(failures).toBe(2);
      await waitFor(() => settled("direct"), 5000, "all acked");
      expect(seen.sort()).toEqual(["direct-1", "direct-2"]);
    } finally {
      await c.stop();
    }
  });

  it("with prefetch 8, asks JetStream for more once three quarters of the last request have arrived (not for every other message)", async () => {
    const subj = subject("refill");
    const durable = "refill";
    const seen: string[] = [];
    const pullRequests = env.nc.subscribe(`$JS.API.CONSUMER.MSG.NEXT.${env.stream("inventory")}.${durable}`);
    const c = await startConsumer({ js: env.js, stream: env.stream("inventory"), durable, filterSubject: subj, prefetch: 8, handle: async (d) => void seen.push(d.id) });
    try {
      for (let i = 0; i < 24; i++) {
        await publishMessages(env.js, [reserve(subj, `refill-${i}`, `r-${i}`)]);
        await waitFor(() => seen.length === i + 1, 5000, `message ${i} handled`);
      }
      await waitFor(() => settled(durable), 5000, "all acked");
      await env.nc.flush();
      // The first request and one per 6 messages (nats.js's default threshold: one per 2, 13 in all).
      expect(pullRequests.getReceived()).toBeLessThanOrEqual(5);
      expect(pullRequests.getReceived()).toBeGreaterThanOrEqual(4);
    } finally {
      pullRequests.unsubscribe();
      await c.stop();
    }
  });

  it("with batchesInFlight: 2 handles the next batch while the previous one waits; with the default, not before it ends", async () => {
    for (const batchesInFlight of [2, 1]) {
      const subj = subject(`inflight-${batchesInFlight}`);
      const durable = `inflight-${batchesInFlight}`;
      const started: string[] = [];
      let release = (): void => undefined;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      const c = await startConsumer({
        js: env.js,
        stream: env.stream("inventory"),
        durable,
        filterSubject: subj,
        batchSize: 1,
        parallel: true,
        batchesInFlight,
        dlq: env.dlq,
        handle: async (d) => {
          started.push(d.id);
          if (d.id.endsWith("-first")) await held;
        },
      });
      try {
        await publishMessages(env.js, [reserve(subj, `${durable}-first`, "y-1")]);
        await waitFor(() => started.length === 1, 5000, "first batch started");
        await publishMessages(env.js, [reserve(subj, `${durable}-second`, "y-2")]);
        if (batchesInFlight === 2) {
          await waitFor(() => started.length === 2, 5000, "second batch handled while the first waits");
        } else {
          await new Promise((resolve) => setTimeout(resolve, 300));
          expect(started).toEqual([`${durable}-first`]);
        }
        release();
        await waitFor(() => started.length === 2, 5000, "both handled");
        await waitFor(() => settled(durable), 5000, "all acked");
      } finally {
        release();
        await c.stop();
      }
    }
  });

  it("with publishEmitted publishes what a batch's handlers emitted as one bundle before the acks; a failed handler emits nothing", async () => {
    const subj = subject("direct-emit");
    const replies = `${env.domain("inventory")}.evt.emitted`;
    const c = await startConsumer({
      js: env.js,
      stream: env.stream("inventory"),
      durable: "direct-emit",
      filterSubject: subj,
      maxDeliver: 1,
      parallel: true,
      publishEmitted: env.publisher,
      dlq: env.dlq,
      handle: async (d, out) => {
        out.emit({ subject: replies, id: `${d.id}:reply`, key: d.key, message: create(StockReservedSchema, { orderId: d.key }) });
        if (d.id === "emit-bad") throw new Error("fails after emitting");
      },
    });
    try {
      await publishBundled(env.js, [reserve(subj, "emit-1", "z-1"), reserve(subj, "emit-bad", "z-bad"), reserve(subj, "emit-2", "z-2")]);
      await waitFor(() => settled("direct-emit"), 5000, "all settled");
      const stored = (await readStream(env.jsm, env.stream("inventory"))).filter((m) => m.subject === replies);
      expect(stored).toHaveLength(1);
      const entries = receivedEntries(stored[0]!.header, stored[0]!.data, { stream: env.stream("inventory"), seq: stored[0]!.seq });
      expect(entries.map((e) => e.id).sort()).toEqual(["emit-1:reply", "emit-2:reply"]);
      expect((await listDeadLetters(env.jsm, { dlq: env.dlq })).some((dl) => dl.messageId === "emit-bad")).toBe(true);
    } finally {
      await c.stop();
    }
  });

  it("dead-letters a message whose handler emitted what cannot be encoded, instead of retrying its publication for ever", async () => {
    const subj = subject("emit-unencodable");
    const c = await startConsumer({
      js: env.js,
      stream: env.stream("inventory"),
      durable: "emit-unencodable",
      filterSubject: subj,
      maxDeliver: 1,
      publishEmitted: env.publisher,
      dlq: env.dlq,
      // A type the saga's registry does not know: no bus is ever going to take it.
      handle: async (d, out) => out.emit({ subject: `${env.domain("inventory")}.evt.odd`, id: `${d.id}:reply`, key: d.key, message: create(HealthCheckResponseSchema, {}) }),
    });
    try {
      await publishBundled(env.js, [reserve(subj, "emit-odd", "z-odd")]);
      await waitFor(async () => (await listDeadLetters(env.jsm, { dlq: env.dlq })).some((dl) => dl.messageId === "emit-odd"), 10_000, "dead-lettered");
    } finally {
      await c.stop();
    }
  });
});
