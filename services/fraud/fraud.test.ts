import { randomBytes, randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AssessFraudSchema, Decision, FraudAssessedSchema } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { encodeMessage, Header, type BusConsumer, busHeaders } from "../platform/bus/index.js";
import { busTestEnv, readBusMessages, waitFor, type BusTestEnv } from "../platform/bus/testkit.js";
import { createLogger } from "../platform/logger.js";
import { money } from "../platform/money.js";
import { FraudAssessor } from "./assessor.js";
import type { FraudRules } from "./rules.js";
import { replyId, startFraudSaga } from "./saga.js";
import { connectRedis } from "../platform/redis.js";
import { FraudStore } from "./store.js";

const REDIS_URL = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";
const logger = createLogger("fraud-test", "error");
const rules: FraudRules = { maxOrderAmountMinor: 500_000n, velocityMaxOrders: 3, velocityWindowSeconds: 60, blockedCustomers: new Set(["mallory"]) };
const usd = (amountMinor: bigint) => ({ amountMinor, currency: "USD" });

let redis: Redis;
const prefix = `fraud-test-${randomBytes(4).toString("hex")}:`;

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 3000, retryStrategy: () => null });
  try {
    await redis.connect();
  } catch (error) {
    throw new Error(`fraud tests need Redis at ${REDIS_URL} (set REDIS_URL): ${error instanceof Error ? error.message : String(error)}`);
  }
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("FraudAssessor with Redis", () => {
  const customer = () => `c-${randomUUID()}`;

  it("counts an order toward velocity once, however often its command is delivered", async () => {
    const store = new FraudStore(redis, prefix);
    const assessor = new FraudAssessor(store, rules, logger);
    const customerId = customer();
    const orders = [randomUUID(), randomUUID(), randomUUID()];
    for (const orderId of [...orders, ...orders, ...orders]) {
      expect((await assessor.assessForSaga({ orderId, customerId, total: usd(100n) })).decision).toBe(Decision.APPROVE);
    }
    expect(await redis.zcard(`${prefix}velocity:${customerId}`)).toBe(3);
    // The fourth distinct order breaks the limit of 3.
    const fourth = await assessor.assessForSaga({ orderId: randomUUID(), customerId, total: usd(100n) });
    expect(fourth.decision).toBe(Decision.DECLINE);
    expect(fourth.reasons.map((r) => r.code)).toEqual(["velocity"]);
  });

  it("asks Redis twice per new order (stored decision or record, then store the decision) and once per re-send", async () => {
    const assessor = new FraudAssessor(new FraudStore(redis, prefix), rules, logger);
    const customerId = customer();
    await assessor.assessForSaga({ orderId: randomUUID(), customerId, total: usd(1n) }); // loads the script
    const sent = vi.spyOn(redis, "sendCommand");
    const names = () => sent.mock.calls.map(([command]) => command.name);
    try {
      const orderId = randomUUID();
      const first = await assessor.assessForSaga({ orderId, customerId, total: usd(1n) });
      expect(names()).toEqual(["evalsha", "set"]);
      sent.mockClear();
      expect(await assessor.assessForSaga({ orderId, customerId, total: usd(1n) })).toEqual(first);
      expect(names()).toEqual(["evalsha"]);
    } finally {
      sent.mockRestore();
    }
    expect(await redis.zcard(`${prefix}velocity:${customerId}`)).toBe(2);
  });

  it("only counts orders inside the window, on Redis's clock", async () => {
    // A one-second window: the wait below is the window passing on Redis's clock, which every replica shares.
    const assessor = new FraudAssessor(new FraudStore(redis, prefix), { ...rules, velocityWindowSeconds: 1 }, logger);
    const customerId = customer();
    for (let i = 0; i < 3; i++) await assessor.assessForSaga({ orderId: randomUUID(), customerId, total: usd(1n) });
    expect((await assessor.dryRun({ orderId: randomUUID(), customerId, total: usd(1n) })).decision).toBe(Decision.DECLINE);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await assessor.dryRun({ orderId: randomUUID(), customerId, total: usd(1n) })).decision).toBe(Decision.APPROVE);
    expect((await assessor.assessForSaga({ orderId: randomUUID(), customerId, total: usd(1n) })).decision).toBe(Decision.APPROVE);
    expect(await redis.zcard(`${prefix}velocity:${customerId}`)).toBe(1);
    // The window's entries are Redis times (ms): within a second of Redis's own clock, whatever this process's says.
    const [seconds] = await redis.time();
    const [, score] = await redis.zrange(`${prefix}velocity:${customerId}`, "0", "0", "WITHSCORES");
    expect(Math.abs(Number(score) - Number(seconds) * 1000)).toBeLessThan(2_000);
  });

  it("counts a re-sent order again once its first time has left the window (its decision was never stored)", async () => {
    const store = new FraudStore(redis, prefix);
    const customerId = customer();
    const orderId = randomUUID();
    expect(await store.decidedOrRecorded(customerId, orderId, 1)).toEqual({ ordersInWindow: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(await store.decidedOrRecorded(customerId, orderId, 1)).toEqual({ ordersInWindow: 1 });
  });

  it("returns the same decision when a command is re-sent, even after the rules would say otherwise", async () => {
    const store = new FraudStore(redis, prefix);
    const customerId = customer();
    const orderId = randomUUID();
    const first = await new FraudAssessor(store, rules, logger).assessForSaga({ orderId, customerId, total: usd(600_000n) });
    expect(first.decision).toBe(Decision.DECLINE);
    const looser = new FraudAssessor(store, { ...rules, maxOrderAmountMinor: 10_000_000n }, logger);
    expect(await looser.assessForSaga({ orderId, customerId, total: usd(600_000n) })).toEqual(first);
    expect(await redis.ttl(`${prefix}decision:${orderId}`)).toBeGreaterThan(86_000);
  });

  it("agrees on one decision when the same command is handled concurrently", async () => {
    const store = new FraudStore(redis, prefix);
    const customerId = customer();
    const orderId = randomUUID();
    const results = await Promise.all(Array.from({ length: 10 }, () => new FraudAssessor(store, rules, logger).assessForSaga({ orderId, customerId, total: usd(1n) })));
    for (const r of results) expect(r).toEqual(results[0]);
    expect(await redis.zcard(`${prefix}velocity:${customerId}`)).toBe(1);
  });

  it("AssessOrder is a dry run: reads velocity as if the order were added, records nothing", async () => {
    const assessor = new FraudAssessor(new FraudStore(redis, prefix), rules, logger);
    const customerId = customer();
    for (let i = 0; i < 2; i++) await assessor.assessForSaga({ orderId: randomUUID(), customerId, total: usd(1n) });
    for (let i = 0; i < 5; i++) expect((await assessor.dryRun({ orderId: randomUUID(), customerId, total: usd(1n) })).decision).toBe(Decision.APPROVE);
    expect(await redis.zcard(`${prefix}velocity:${customerId}`)).toBe(2);
    await assessor.assessForSaga({ orderId: randomUUID(), customerId, total: usd(1n) });
    const dry = await assessor.dryRun({ orderId: "", customerId, total: usd(1n) });
    expect(dry.reasons.map((r) => r.code)).toEqual(["velocity"]);
    expect(await redis.keys(`${prefix}decision:none*`)).toEqual([]);
  });

  it("fails open when Redis is down: velocity skipped, other rules applied, no error", async () => {
    const down = connectRedis("redis://127.0.0.1:1", logger, "velocity checks are skipped");
    try {
      const assessor = new FraudAssessor(new FraudStore(down, prefix), { ...rules, velocityMaxOrders: 1 }, logger);
      const customerId = customer();
      const started = Date.now();
      for (let i = 0; i < 3; i++) expect((await assessor.assessForSaga({ orderId: randomUUID(), customerId, total: usd(1n) })).decision).toBe(Decision.APPROVE);
      expect((await assessor.assessForSaga({ orderId: randomUUID(), customerId: "mallory", total: usd(1n) })).decision).toBe(Decision.DECLINE);
      expect((await assessor.dryRun({ orderId: "", customerId, total: usd(1n) })).decision).toBe(Decision.APPROVE);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      down.disconnect();
    }
  });
});

describe("fraud saga over JetStream", () => {
  let env: BusTestEnv;
  let consumer: BusConsumer | undefined;

  beforeAll(async () => {
    env = await busTestEnv(["fraud"], null, { commandStreams: ["fraud"] });
  });
  afterAll(async () => {
    await consumer?.stop();
    await env?.cleanup();
  });

  async function sendCommand(orderId: string, customerId: string, amountMinor: bigint, messageId: string): Promise<void> {
    const command = create(AssessFraudSchema, { orderId, customerId, total: money(amountMinor, "USD") });
    const { type, payload } = encodeMessage(command);
    await env.js.publish(`${env.domain("fraud")}.cmd.assess`, payload, { msgID: messageId, headers: busHeaders({ type, id: messageId, key: orderId }) });
  }

  it("answers every fraud.cmd.assess (re-sends too) with the same FraudAssessed, keyed by order id", async () => {
    const assessor = new FraudAssessor(new FraudStore(redis, prefix), rules, logger);
    consumer = await startFraudSaga({ js: env.js, publisher: env.publisher, assessor, logger, domain: env.domain("fraud"), dlq: env.dlq, batchSize: 10 });
    const customerId = `c-${randomUUID()}`;
    const approved = randomUUID();
    const declined = randomUUID();
    // The orchestrator re-sends with new message ids when it misses a reply: each is answered,
    // and the answer does not change (velocity and decision are recorded once per order).
    const firstApproved = randomUUID();
    await sendCommand(approved, customerId, 100n, firstApproved);
    await sendCommand(declined, customerId, 900_000n, randomUUID());
    await sendCommand(approved, customerId, 100n, randomUUID());
    await sendCommand(declined, customerId, 900_000n, randomUUID());

    const replies = async () => (await readBusMessages(env.jsm, env.stream("fraud"))).filter((m) => m.subject === `${env.domain("fraud")}.evt.assessed`);
    await waitFor(async () => (await replies()).length >= 4, 10_000, "four replies");
    await new Promise((r) => setTimeout(r, 300));
    const got = await replies();
    expect(got).toHaveLength(4);
    const parsed = got.map((m) => ({ key: m.header.get(Header.key), id: m.header.get(Header.id), reply: fromBinary(FraudAssessedSchema, m.data), type: m.header.get(Header.type) }));
    const forApproved = parsed.filter((p) => p.key === approved);
    const forDeclined = parsed.filter((p) => p.key === declined);
    expect(forApproved).toHaveLength(2);
    expect(forApproved.map((p) => p.id)).toContain(replyId(approved, firstApproved));
    expect(forApproved[0]).toMatchObject({ type: FraudAssessedSchema.typeName, reply: { orderId: approved, decision: Decision.APPROVE, reasons: [] } });
    expect(forApproved.map((p) => p.reply.decision)).toEqual([Decision.APPROVE, Decision.APPROVE]);
    expect(forDeclined.map((p) => p.reply.decision)).toEqual([Decision.DECLINE, Decision.DECLINE]);
    expect(forDeclined.map((p) => p.reply.reasons)).toEqual([["order total $9,000.00 exceeds the limit of $5,000.00"], ["order total $9,000.00 exceeds the limit of $5,000.00"]]);
    expect(await redis.zcard(`${prefix}velocity:${customerId}`)).toBe(2);
  });
});
