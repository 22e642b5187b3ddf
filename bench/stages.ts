// Where a saga step's end-to-end time goes, stage by stage: for each order the step confirmed,
// when JetStream stored each of its commands and replies (the streams' own timestamps) and when
// the order service began each of its writes (the order history's times). A stage that grows
// with the load is where the orders queue.
import type { Message } from "@bufbuild/protobuf";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { AssessFraudSchema, FraudAssessedSchema } from "../gen/orderflow/fraud/v1/fraud_pb.js";
import { ReserveStockSchema, StockReservedSchema } from "../gen/orderflow/inventory/v1/saga_pb.js";
import { OrderConcludedSchema } from "../gen/orderflow/order/v1/events_pb.js";
import { ChargePaymentSchema, PaymentChargedSchema } from "../gen/orderflow/payment/v1/payment_pb.js";
import { decodeMessage, receivedEntries } from "../services/platform/bus/index.js";
import { quoteSchema } from "../services/platform/bus/names.js";
import { startRecording, stopRecording } from "../services/platform/bus/recording.js";
import { sagaStreams } from "../services/platform/saga-routes.js";
import type { Queryable } from "../services/platform/db.js";
import { summarize } from "./stats.js";

/** One stage's latency over the step's confirmed orders, in ms. */
export interface SagaStage {
  stage: string;
  /** The process the time is spent in or waiting for. */
  service: string;
  count: number;
  p50: number;
  p90: number;
  p99: number;
}

/** When an order was accepted and when the order service began writing each of its steps (ms since the epoch, Postgres's clock). */
export interface OrderTimes {
  orderId: string;
  createdMs: number;
  stockReservedMs: number;
  confirmedMs: number;
}

/** When JetStream stored each of an order's messages, by message type (ms since the epoch, NATS's clock). */
export type StoredTimes = ReadonlyMap<string, ReadonlyMap<string, number>>;

const t = {
  assess: AssessFraudSchema.typeName,
  assessed: FraudAssessedSchema.typeName,
  reserve: ReserveStockSchema.typeName,
  reserved: StockReservedSchema.typeName,
  charge: ChargePaymentSchema.typeName,
  charged: PaymentChargedSchema.typeName,
  concluded: OrderConcludedSchema.typeName,
} as const;

type Times = Record<keyof typeof t | "created" | "stockReserved" | "confirmed", number>;

/** The message types the stages are timed by: the only ones worth decoding. */
const stageTypes: ReadonlySet<string> = new Set(Object.values(t));

type StageDefinition = { stage: string; service: string; span: (o: Times) => number };

/** The stages every layout has: each participant's own, the conclusion, the whole. */
const fraudStage: StageDefinition = { stage: "assess command → decision stored", service: "fraud", span: (o) => o.assessed - o.assess };
const inventoryStage: StageDefinition = { stage: "reserve command → reply stored", service: "inventory", span: (o) => o.reserved - o.reserve };
const paymentStage: StageDefinition = { stage: "charge command → reply stored", service: "payment", span: (o) => o.charged - o.charge };
const conclusionStage: StageDefinition = { stage: "write began → conclusion event stored", service: "order", span: (o) => o.concluded - o.confirmed };
const wholeStage: StageDefinition = { stage: "whole: accepted → conclusion event stored", service: "all", span: (o) => o.concluded - o.created };

/** The stages of an order charged alongside the fraud check and the reservation (the default), in saga order. */
const chargedAlongside: readonly StageDefinition[] = [
  { stage: "accepted → the three commands stored", service: "order", span: (o) => Math.max(o.assess, o.reserve, o.charge) - o.created },
  fraudStage,
  inventoryStage,
  paymentStage,
  { stage: "last of the three replies → CONFIRMED write began", service: "order", span: (o) => o.confirmed - Math.max(o.assessed, o.reserved, o.charged) },
  conclusionStage,
  wholeStage,
];

/** The stages of an order charged once its stock was held (`SAGA_CHARGE_DURING_CHECKS=false`), in saga order. */
const chargedAfter: readonly StageDefinition[] = [
  { stage: "accepted → fraud and reserve commands stored", service: "order", span: (o) => Math.max(o.assess, o.reserve) - o.created },
  fraudStage,
  inventoryStage,
  { stage: "last of the two replies → write began", service: "order", span: (o) => o.stockReserved - Math.max(o.assessed, o.reserved) },
  { stage: "write began → charge command stored", service: "order", span: (o) => o.charge - o.stockReserved },
  paymentStage,
  { stage: "reply → CONFIRMED write began", service: "order", span: (o) => o.confirmed - o.charged },
  conclusionStage,
  wholeStage,
];

/**
 * Each stage's percentiles over the orders whose every moment is known (others are left out),
 * in the layout most of them were placed with: charged alongside the other steps (its command
 * stored before the STOCK_RESERVED write began) or after them.
 */
export function stageLatencies(orders: readonly OrderTimes[], stored: StoredTimes): SagaStage[] {
  const complete: Times[] = [];
  for (const order of orders) {
    const messages = stored.get(order.orderId);
    if (!messages) continue;
    const times: Partial<Times> = { created: order.createdMs, stockReserved: order.stockReservedMs, confirmed: order.confirmedMs };
    for (const [key, typeName] of Object.entries(t) as Array<[keyof typeof t, string]>) times[key] = messages.get(typeName);
    if (isComplete(times)) complete.push(times);
  }
  const alongside = complete.filter((o) => o.charge < o.stockReserved);
  const [definitions, measured] = alongside.length * 2 >= complete.length ? [chargedAlongside, alongside] : [chargedAfter, complete.filter((o) => o.charge >= o.stockReserved)];
  return definitions.map(({ stage, service, span }) => {
    const { count, p50, p90, p99 } = summarize(measured.map(span));
    return { stage, service, count, p50, p90, p99 };
  });
}

function isComplete(times: Partial<Times>): times is Times {
  return Object.values(times).every((value) => value !== undefined && Number.isFinite(value));
}

/**
 * The step's confirmed orders (customers `customerPrefix`…) created between `from` and `to`
 * (Postgres's clock, ISO), from the order service's schema `schema`.
 */
export async function confirmedOrderTimes(db: Queryable, customerPrefix: string, from: string, to: string, schema = "orders"): Promise<OrderTimes[]> {
  const s = quoteSchema(schema);
  const { rows } = await db.query<{ id: string; created: number; reserved: number | null; confirmed: number | null }>(
    `SELECT o.order_id::text AS id, extract(epoch FROM o.created_at) * 1000 AS created,
            extract(epoch FROM min(h.at) FILTER (WHERE h.to_status = 'STOCK_RESERVED')) * 1000 AS reserved,
            extract(epoch FROM min(h.at) FILTER (WHERE h.to_status = 'CONFIRMED')) * 1000 AS confirmed
       FROM ${s}.orders o JOIN ${s}.order_history h USING (order_id)
      WHERE o.status = 'CONFIRMED' AND starts_with(o.customer_id, $1) AND o.created_at >= $2 AND o.created_at < $3
      GROUP BY o.order_id, o.created_at`,
    [customerPrefix, from, to],
  );
  return rows.flatMap((r) =>
    r.reserved === null || r.confirmed === null ? [] : [{ orderId: r.id, createdMs: Number(r.created), stockReservedMs: Number(r.reserved), confirmedMs: Number(r.confirmed) }],
  );
}

/** The durable consumer through which the bench keeps the saga's messages until it has read them. */
export const RECORDER = "orderflow-bench-stages";

/** Keeps the saga's messages from the first step on, until `storedTimes` has read them. */
export const startStageRecording = (jsm: JetStreamManager): Promise<void> => startRecording(jsm, sagaStreams, RECORDER);
export const stopStageRecording = (jsm: JetStreamManager): Promise<void> => stopRecording(jsm, sagaStreams, RECORDER);

/**
 * When JetStream stored each message of `streams` that a stage is timed by (bundles unpacked, by
 * order id and type; the first copy of a re-sent one), of those `RECORDER` kept, until a
 * message stored after `untilMs` or the end of the recording.
 */
export async function storedTimes(js: JetStreamClient, untilMs: number, streams = sagaStreams): Promise<Map<string, Map<string, number>>> {
  const stored = new Map<string, Map<string, number>>();
  for (const stream of streams) {
    const consumer = await js.consumers.get(stream, RECORDER);
    if ((await consumer.info()).num_pending === 0) continue;
    const messages = await consumer.consume({ max_messages: 1_000 });
    for await (const m of messages) {
      const storedMs = m.info.timestampNanos / 1e6;
      if (storedMs > untilMs) break;
      for (const entry of receivedEntries(m.headers, m.data, { stream, seq: m.seq })) {
        if (!stageTypes.has(entry.type)) continue;
        const orderId = orderIdOf(entry.type, entry.payload);
        if (orderId === undefined) continue;
        const byType = stored.get(orderId) ?? new Map<string, number>();
        if (!byType.has(entry.type)) byType.set(entry.type, storedMs);
        stored.set(orderId, byType);
      }
      if (m.info.pending === 0) break;
    }
    messages.stop();
  }
  return stored;
}

function orderIdOf(type: string, payload: Uint8Array): string | undefined {
  let message: Message;
  try {
    message = decodeMessage(type, payload);
  } catch {
    return undefined;
  }
  const orderId: unknown = Reflect.get(message, "orderId");
  return typeof orderId === "string" && orderId !== "" ? orderId : undefined;
}
