import { create } from "@bufbuild/protobuf";
import { context, trace, TraceFlags } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CommitStockSchema, ReleaseStockSchema, ReserveStockSchema, StockReleasedSchema, StockReservedSchema } from "../../gen/orderflow/inventory/v1/saga_pb.js";
import { listDeadLetters } from "./bus/dlq.js";
import type { StreamPublisher } from "./bus/jetstream-publisher.js";
import { publishMessages, type OutgoingMessage } from "./bus/publish.js";
import { busTestEnv, type BusTestEnv, eventsIn, publisherInto, useTraceContext, waitFor } from "./bus/testkit.js";
import type { PoolClient } from "./db.js";
import { applyCommands, type CommandHandlers, decidedOncePerOrder, on, onBatch, startCommandConsumer } from "./saga-participant.js";

process.env["LOG_LEVEL"] ??= "error";
useTraceContext();

let env: BusTestEnv;
beforeAll(async () => {
  env = await busTestEnv(["inventory"], inject("infra"), { commandStreams: ["inventory"] });
  await env.pool.query(`CREATE TABLE "${env.schema}".applied (test text NOT NULL, order_id text NOT NULL, n bigint GENERATED ALWAYS AS IDENTITY)`);
});
afterAll(async () => {
  await env?.cleanup();
});

const traceIdOf = (i: number): string => (i + 1).toString(16).padStart(32, "a");

/** Publishes each command under a trace of its own (trace id `traceIdOf(i)`). */
async function publishTraced(commands: OutgoingMessage[]): Promise<void> {
  for (const [i, command] of commands.entries()) {
    const ctx = trace.setSpanContext(context.active(), { traceId: traceIdOf(i), spanId: "a7ad6b7169203331", traceFlags: TraceFlags.SAMPLED });
    await context.with(ctx, () => publishMessages(env.js, [command]));
  }
}

const command = (verb: "reserve" | "release" | "commit", orderId: string): OutgoingMessage => ({
  subject: `${env.domain("inventory")}.cmd.${verb}`,
  id: `${verb}-${orderId}`,
  key: orderId,
  message:
    verb === "reserve"
      ? create(ReserveStockSchema, { orderId, lines: [{ sku: "sku-1", quantity: 1n }] })
      : verb === "release"
        ? create(ReleaseStockSchema, { orderId })
        : create(CommitStockSchema, { orderId }),
});

async function record(tx: PoolClient, test: string, orderIds: string[]): Promise<void> {
  await tx.query(`INSERT INTO "${env.schema}".applied (test, order_id) SELECT $1, unnest($2::text[])`, [test, orderIds]);
}

async function appliedIn(test: string, db: Pick<PoolClient, "query"> = env.pool): Promise<string[]> {
  return (await db.query<{ order_id: string }>(`SELECT order_id FROM "${env.schema}".applied WHERE test = $1 ORDER BY n`, [test])).rows.map((r) => r.order_id);
}

const replies = (): Promise<Array<{ subject: string; key: string; traceId: string }>> => eventsIn(env.jsm, env.stream("inventory"));

describe("a participant's command consumer", () => {
  it("applies a batch's onBatch commands together, before the next `on` command; replies in order, each in its command's trace", async () => {
    const batchSizes: number[] = [];
    let appliedBeforeRelease: string[] = [];
    const handlers: CommandHandlers = Object.fromEntries([
      onBatch(ReserveStockSchema, async (tx, commands) => {
        batchSizes.push(commands.length);
        await record(
          tx,
          "order",
          commands.map((c) => c.orderId),
        );
        return commands.map((c) => ({ subject: "inventory.evt.reserved", message: create(StockReservedSchema, { orderId: c.orderId }) }));
      }),
      onBatch(CommitStockSchema, async (tx, commands) => {
        await record(
          tx,
          "order",
          commands.map((c) => `commit-${c.orderId}`),
        );
        return commands.map(() => undefined);
      }),
      on(ReleaseStockSchema, async (tx, c) => {
        appliedBeforeRelease = await appliedIn("order", tx);
        return { subject: "inventory.evt.released", message: create(StockReleasedSchema, { orderId: c.orderId }) };
      }),
    ]);
    const commands = [
      ...["r1", "r2", "r3", "r4"].map((o) => command("reserve", o)),
      command("release", "r1"),
      ...["r6", "r7"].map((o) => command("reserve", o)),
      command("commit", "r2"),
      command("reserve", "r9"),
    ];
    await publishTraced(commands);
    const consumer = await startCommandConsumer({
      js: env.js,
      pool: env.pool,
      publisher: publisherInto(env, "inventory"),
      schema: env.schema,
      domain: env.domain("inventory"),
      handlers,
      consumer: { batchSize: 20 },
    });
    try {
      await waitFor(async () => (await replies()).length === 8, 5000, "eight replies");
      // Every reserve before the release was applied (in its transaction, or committed before) when it ran; none after it.
      expect([...appliedBeforeRelease].sort()).toEqual(["r1", "r2", "r3", "r4"]);
      expect(await appliedIn("order")).toEqual(expect.arrayContaining(["r1", "r2", "r3", "r4", "r6", "r7", "r9", "commit-r2"]));
      expect(Math.max(...batchSizes)).toBeGreaterThan(1);
      const got = await replies();
      // Every command but the commit is answered; an order's replies keep its commands' order
      // (replies of one subject travel bundled, so orders' replies may interleave otherwise).
      const answered = got.map((r) => `${r.subject.split(".").pop() ?? ""} ${r.key}`);
      expect([...answered].sort()).toEqual(["released r1", "reserved r1", "reserved r2", "reserved r3", "reserved r4", "reserved r6", "reserved r7", "reserved r9"]);
      expect(answered.indexOf("reserved r1")).toBeLessThan(answered.indexOf("released r1"));
      const traceOfCommand = new Map(commands.map((c, i) => [`${c.subject.split(".").pop() ?? ""} ${c.key ?? ""}`, traceIdOf(i)]));
      for (const r of got) expect(r.traceId).toBe(traceOfCommand.get(`${r.subject.endsWith("released") ? "release" : "reserve"} ${r.key}`));
    } finally {
      await consumer.stop();
    }
  });

  it("applies onBatch types in the order they are listed, but an order's own commands in their order", async () => {
    const applied: string[] = [];
    const handlers: CommandHandlers = Object.fromEntries([
      onBatch(ReleaseStockSchema, async (_tx, commands) => {
        applied.push(commands.map((c) => `release ${c.orderId}`).join(" + "));
        return commands.map((c) => ({ subject: "inventory.evt.released", message: create(StockReleasedSchema, { orderId: c.orderId }) }));
      }),
      onBatch(ReserveStockSchema, async (_tx, commands) => {
        applied.push(commands.map((c) => `reserve ${c.orderId}`).join(" + "));
        return commands.map((c) => ({ subject: "inventory.evt.reserved", message: create(StockReservedSchema, { orderId: c.orderId }) }));
      }),
    ]);
    const [reserve, release] = [(orderId: string) => create(ReserveStockSchema, { orderId }), (orderId: string) => create(ReleaseStockSchema, { orderId })];
    const tx = await env.pool.connect();
    try {
      const replies = await applyCommands(tx, handlers, [reserve("a"), release("b"), reserve("c"), release("a"), reserve("d"), reserve("b")]);
      // Releases before reservations, except that a's reservation comes before a's release, and b's release before b's reservation.
      expect(applied).toEqual(["release b", "reserve a + reserve c", "release a", "reserve d + reserve b"]);
      expect(replies.map((r) => `${r?.subject.split(".").pop() ?? ""} ${r && "orderId" in r.message ? String(r.message.orderId) : ""}`)).toEqual([
        "reserved a",
        "released b",
        "reserved c",
        "released a",
        "reserved d",
        "reserved b",
      ]);
    } finally {
      tx.release();
    }
  });

  it("acks a command only once JetStream has its reply: holds it while publishing fails, hands it back when stopped", async () => {
    const replyTo = publisherInto(env, "inventory");
    let refusals = 0;
    let refuseUntil = 3;
    const flaky: StreamPublisher = {
      publish: (subject, payload, options) => (++refusals <= refuseUntil ? Promise.reject(new Error("JetStream unavailable")) : replyTo.publish(subject, payload, options)),
    };
    const handlers: CommandHandlers = Object.fromEntries([
      on(ReleaseStockSchema, async (tx, c) => {
        await record(tx, "held", [c.orderId]);
        return { subject: "inventory.evt.released", message: create(StockReleasedSchema, { orderId: c.orderId }) };
      }),
    ]);
    const start = (publisher: StreamPublisher) =>
      startCommandConsumer({ js: env.js, pool: env.pool, publisher, schema: env.schema, domain: env.domain("inventory"), handlers, consumer: { maxDeliver: 2, dlq: env.dlq } });
    const repliesTo = async (orderId: string) => (await replies()).filter((r) => r.key === orderId).length;

    // Three refusals, then JetStream takes the reply: answered once, handled once (a nak would have had it handled twice).
    let consumer = await start(flaky);
    try {
      await publishMessages(env.js, [command("release", "held-1")]);
      await waitFor(async () => (await repliesTo("held-1")) === 1, 10_000, "the reply after three refusals");
      expect(refusals).toBe(4);
      expect(await appliedIn("held")).toEqual(["held-1"]);
    } finally {
      await consumer.stop();
    }

    // Refused until the consumer stops: the command is handed back, not acked nor dead-lettered,
    // and the next consumer handles it again and answers it.
    refusals = 0;
    refuseUntil = Number.POSITIVE_INFINITY;
    consumer = await start(flaky);
    await publishMessages(env.js, [command("release", "held-2")]);
    await waitFor(async () => refusals >= 2, 10_000, "publishing the reply to fail");
    await consumer.stop();
    expect(await repliesTo("held-2")).toBe(0);
    consumer = await start(replyTo);
    try {
      await waitFor(async () => (await repliesTo("held-2")) === 1, 10_000, "the next consumer's reply");
      expect(await appliedIn("held")).toEqual(["held-1", "held-2", "held-2"]);
      expect(await listDeadLetters(env.jsm, { dlq: env.dlq })).toEqual([]);
    } finally {
      await consumer.stop();
    }
  });
});

describe("decidedOncePerOrder", () => {
  it("decides the first command of each order together, then sends the rest one by one in batch order, and answers in the commands' order", async () => {
    const commands = [{ orderId: "a", n: 1 }, { orderId: "b", n: 2 }, { orderId: "a", n: 3 }, { orderId: "c", n: 4 }, { orderId: "b", n: 5 }];
    const decidedOn: number[][] = [];
    const oneByOne: number[] = [];
    const replies = await decidedOncePerOrder(
      commands,
      async (firsts) => {
        decidedOn.push(firsts.map((c) => c.n));
        return new Map([["a", "decided 1"], ["b", "decided 2"]]); // c is left to one by one, as an order with a recorded outcome is
      },
      async (command) => {
        oneByOne.push(command.n);
        return `alone ${command.n}`;
      },
    );
    expect(decidedOn).toEqual([[1, 2, 4]]);
    expect(oneByOne).toEqual([3, 4, 5]);
    expect(replies).toEqual(["decided 1", "decided 2", "alone 3", "alone 4", "alone 5"]);
  });
});
