import { randomBytes, randomUUID } from "node:crypto";
import { create, type DescMessage, type Message } from "@bufbuild/protobuf";
import { jetstream, jetstreamManager, type JetStreamManager, RetentionPolicy } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssessFraudSchema, FraudAssessedSchema } from "../gen/orderflow/fraud/v1/fraud_pb.js";
import { ReleaseStockSchema, ReserveStockSchema, StockReservedSchema } from "../gen/orderflow/inventory/v1/saga_pb.js";
import { OrderConcludedSchema } from "../gen/orderflow/order/v1/events_pb.js";
import { ChargePaymentSchema, PaymentChargedSchema } from "../gen/orderflow/payment/v1/payment_pb.js";
import { encodeMessage } from "../services/platform/bus/index.js";
import { bundleForWire } from "../services/platform/bus/bundle.js";
import { startRecording, stopRecording } from "../services/platform/bus/recording.js";
import { createLogger } from "../services/platform/logger.js";
import { migrate } from "../services/platform/migrate.js";
import { confirmedOrderTimes, type OrderTimes, stageLatencies, RECORDER, type StoredTimes, storedTimes } from "./stages.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const suffix = `${process.pid}_${randomBytes(3).toString("hex")}`;
const streams = [`STAGES_A_${suffix}`, `STAGES_B_${suffix}`];
const subjectOf = (stream: string): string => `stages-test.${stream.toLowerCase()}`;
const schema = `stages_${suffix}`;

let nc: NatsConnection;
let jsm: JetStreamManager;
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });

beforeAll(async () => {
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
  // Interest retention, as the saga's streams: a message no consumer takes is not kept.
  for (const stream of streams) await jsm.streams.add({ name: stream, subjects: [subjectOf(stream)], retention: RetentionPolicy.Interest });
  await migrate({ databaseUrl: DATABASE_URL, service: "order", schema, logger: createLogger("stages-test", "warn"), busTables: true });
});
afterAll(async () => {
  for (const stream of streams) await jsm?.streams.delete(stream).catch(() => undefined);
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  await nc?.close();
  await pool.end();
});

/** When the seven messages of a confirmed order were stored, in the order of `types`: `gap` ms apart after `start`. */
function confirmedSaga(start: number, gap: number, types: readonly DescMessage[]): Map<string, number> {
  return new Map(types.map((schema, index) => [schema.typeName, start + gap * (index + 1)]));
}

const chargedAfter = [AssessFraudSchema, ReserveStockSchema, FraudAssessedSchema, StockReservedSchema, ChargePaymentSchema, PaymentChargedSchema, OrderConcludedSchema];
const chargedAlongside = [AssessFraudSchema, ReserveStockSchema, ChargePaymentSchema, FraudAssessedSchema, StockReservedSchema, PaymentChargedSchema, OrderConcludedSchema];

/** Each stage's orders counted and median, keyed "service: stage". */
function countAndMedianByStage(orders: readonly OrderTimes[], stored: StoredTimes): Record<string, [number, number]> {
  return Object.fromEntries(stageLatencies(orders, stored).map((s) => [`${s.service}: ${s.stage}`, [s.count, s.p50]]));
}

describe("saga stages", () => {
  it("splits each confirmed order's time into stages and leaves out orders with a moment missing", () => {
    // Created at 0; messages at 10, 20, … 70; STOCK_RESERVED and CONFIRMED written in one write that began at 65.
    const orders: OrderTimes[] = ["a", "b", "c"].map((orderId) => ({ orderId, createdMs: 0, stockReservedMs: 65, confirmedMs: 65 }));
    const incomplete = confirmedSaga(0, 10, chargedAlongside);
    incomplete.delete(PaymentChargedSchema.typeName);
    expect(countAndMedianByStage(orders, new Map([["a", confirmedSaga(0, 10, chargedAlongside)], ["b", confirmedSaga(0, 10, chargedAlongside)], ["c", incomplete]]))).toEqual({
      "order: accepted → the three commands stored": [2, 30],
      "fraud: assess command → decision stored": [2, 30],
      "inventory: reserve command → reply stored": [2, 30],
      "payment: charge command → reply stored": [2, 30],
      "order: last of the three replies → CONFIRMED write began": [2, 5],
      "order: write began → conclusion event stored": [2, 5],
      "all: whole: accepted → conclusion event stored": [2, 70],
    });
  });

  it("orders charged once their stock was held get that layout's stages", () => {
    // Created at 0; messages at 10, 20, … 70; STOCK_RESERVED write began at 45, CONFIRMED at 65.
    const orders: OrderTimes[] = ["a", "b"].map((orderId) => ({ orderId, createdMs: 0, stockReservedMs: 45, confirmedMs: 65 }));
    expect(countAndMedianByStage(orders, new Map([["a", confirmedSaga(0, 10, chargedAfter)], ["b", confirmedSaga(0, 10, chargedAfter)]]))).toEqual({
      "order: accepted → fraud and reserve commands stored": [2, 20],
      "fraud: assess command → decision stored": [2, 20],
      "inventory: reserve command → reply stored": [2, 20],
      "order: last of the two replies → write began": [2, 5],
      "order: write began → charge command stored": [2, 5],
      "payment: charge command → reply stored": [2, 10],
      "order: reply → CONFIRMED write began": [2, 5],
      "order: write began → conclusion event stored": [2, 5],
      "all: whole: accepted → conclusion event stored": [2, 70],
    });
  });

  it("reads when JetStream stored each entry of bundles and single messages, by order and type, from the recording's start until the window's end", async () => {
    const [early, first, second, late] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const js = jetstream(nc);
    const publish = async (stream: string, messages: Message[]): Promise<void> => {
      const entries = messages.map((message) => ({ ...encodeMessage(message), subject: subjectOf(stream), id: randomUUID(), key: null, headers: {} }));
      for (const wire of bundleForWire(entries)) await js.publish(wire.subject, wire.payload, { msgID: wire.msgID, headers: wire.headers });
    };
    // Before the recording: not kept.
    await publish(streams[0]!, [create(AssessFraudSchema, { orderId: early })]);
    await startRecording(jsm, streams, RECORDER);
    const from = Date.now();
    // Two orders' commands as one bundle, a reply alone in the other stream.
    await publish(streams[0]!, [create(AssessFraudSchema, { orderId: first }), create(AssessFraudSchema, { orderId: second })]);
    await publish(streams[1]!, [create(FraudAssessedSchema, { orderId: first }), create(ReleaseStockSchema, { orderId: first })]);
    // A re-sent command keeps the time of its first copy.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await publish(streams[0]!, [create(AssessFraudSchema, { orderId: first })]);
    const until = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await publish(streams[0]!, [create(AssessFraudSchema, { orderId: late })]);

    const stored = await storedTimes(js, until, streams);
    await stopRecording(jsm, streams, RECORDER);
    for (const stream of streams) expect((await jsm.streams.info(stream)).state.messages).toBe(0);

    expect([...stored.keys()].sort()).toEqual([first, second].sort());
    // No stage is timed by a release: it is not kept.
    expect([...(stored.get(first)?.keys() ?? [])].sort()).toEqual([AssessFraudSchema.typeName, FraudAssessedSchema.typeName].sort());
    const assessed = stored.get(first)?.get(FraudAssessedSchema.typeName);
    const assessFirst = stored.get(first)?.get(AssessFraudSchema.typeName);
    expect(assessFirst).toBe(stored.get(second)?.get(AssessFraudSchema.typeName));
    expect(assessed).toBeGreaterThanOrEqual(assessFirst ?? Infinity);
    expect(assessFirst).toBeGreaterThanOrEqual(from - 1);
    expect(until - (assessFirst ?? 0)).toBeGreaterThanOrEqual(20);
  });

  it("reads the confirmed orders of a window with the start of their STOCK_RESERVED and CONFIRMED writes", async () => {
    const s = `"${schema}"`;
    const [confirmed, rejected, otherCustomer] = [randomUUID(), randomUUID(), randomUUID()];
    const { rows } = await pool.query<{ now: string }>("SELECT to_json(clock_timestamp()) #>> '{}' AS now");
    const from = rows[0]!.now;
    const order = async (orderId: string, customerId: string, statuses: string[]): Promise<void> => {
      await pool.query(`INSERT INTO ${s}.orders (order_id, customer_id, status, total_minor, currency) VALUES ($1, $2, $3, 100, 'USD')`, [orderId, customerId, statuses.at(-1)]);
      let previous = "";
      for (const status of statuses) {
        await pool.query(`INSERT INTO ${s}.order_history (order_id, from_status, to_status) VALUES ($1, $2, $3)`, [orderId, previous, status]);
        previous = status;
      }
    };
    await order(confirmed, "bench-x-1", ["PENDING", "FRAUD_APPROVED", "STOCK_RESERVED", "CONFIRMED"]);
    await order(rejected, "bench-x-2", ["PENDING", "REJECTED"]);
    await order(otherCustomer, "someone", ["PENDING", "FRAUD_APPROVED", "STOCK_RESERVED", "CONFIRMED"]);
    const to = new Date(Date.now() + 60_000).toISOString();

    const times = await confirmedOrderTimes(pool, "bench-x-", from, to, schema);

    expect(times.map((t) => t.orderId)).toEqual([confirmed]);
    const [t] = times;
    expect(t!.stockReservedMs).toBeGreaterThanOrEqual(t!.createdMs);
    expect(t!.confirmedMs).toBeGreaterThanOrEqual(t!.stockReservedMs);
  });
});
