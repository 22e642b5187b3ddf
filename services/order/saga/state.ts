import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { enqueueOutbox, type OutboxWriter } from "../../platform/bus/index.js";
import { type PoolClient, prepared, type Queryable } from "../../platform/db.js";
import { isTerminal, statusFromName, statusName } from "../domain/status.js";
import { commandFor, concludedEvent, type Step } from "./commands.js";
import { type ItemRow, itemsJson } from "../store.js";
import { sagaMetrics } from "./metrics.js";
import { type Transition, writeTransitions } from "./transitions.js";

export const ordersSchema = "orders";

/** An order as the saga sees it. */
export interface SagaOrder {
  orderId: string;
  customerId: string;
  status: OrderStatus;
  version: bigint;
  totalMinor: bigint;
  currency: string;
  awaiting: Step[];
  attempts: number;
  compensateTo: OrderStatus | undefined;
  reason: string;
  createdAt: Date;
  stepStartedAt: Date;
  /** The order's lines, in order (what a reservation asks for). */
  lines: Array<{ sku: string; quantity: bigint }>;
}

interface SagaRow {
  order_id: string;
  customer_id: string;
  status: string;
  version: string;
  total_minor: string;
  currency: string;
  awaiting: Step[];
  step_attempts: number;
  compensate_to: string | null;
  status_reason: string;
  created_at: Date;
  step_started_at: Date;
  items: ItemRow[];
}

// The lines come with the lock: one round trip less when the reservation step starts.
const sagaColumns = `order_id, customer_id, status, version, total_minor, currency, awaiting, step_attempts, compensate_to, status_reason, created_at, step_started_at, ${itemsJson}`;

function toSagaOrder(row: SagaRow): SagaOrder {
  return {
    orderId: row.order_id,
    customerId: row.customer_id,
    status: statusFromName(row.status),
    version: BigInt(row.version),
    totalMinor: BigInt(row.total_minor),
    currency: row.currency,
    awaiting: row.awaiting,
    attempts: row.step_attempts,
    compensateTo: row.compensate_to ? statusFromName(row.compensate_to) : undefined,
    reason: row.status_reason,
    createdAt: row.created_at,
    stepStartedAt: row.step_started_at,
    lines: row.items.map((i) => ({ sku: i.sku, quantity: BigInt(i.quantity) })),
  };
}

/** Locks the order's row for the rest of the transaction. */
export async function lockOrder(tx: Queryable, orderId: string): Promise<SagaOrder | undefined> {
  const { rows } = await tx.query<SagaRow>(prepared(`SELECT ${sagaColumns} FROM orders WHERE order_id = $1 FOR UPDATE`, [orderId]));
  return rows[0] && toSagaOrder(rows[0]);
}

/**
 * Locks several orders in one statement, in a fixed order, so batches that
 * touch the same orders from different consumers cannot deadlock.
 */
export async function lockOrders(tx: Queryable, orderIds: string[]): Promise<SagaOrder[]> {
  const uuids = orderIds.filter((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id));
  if (uuids.length === 0) return [];
  const { rows } = await tx.query<SagaRow>(prepared(`SELECT ${sagaColumns} FROM orders WHERE order_id = ANY($1::uuid[]) ORDER BY order_id FOR UPDATE`, [uuids]));
  return rows.map(toSagaOrder);
}

/** Orders whose step deadline passed, locked, skipping those another replica holds. */
export async function lockOverdue(tx: Queryable, limit: number): Promise<SagaOrder[]> {
  const { rows } = await tx.query<SagaRow>(`SELECT ${sagaColumns} FROM orders WHERE in_flight AND step_deadline < now() ORDER BY step_deadline LIMIT $1 FOR UPDATE SKIP LOCKED`, [limit]);
  return rows.map(toSagaOrder);
}

export interface Change {
  /** New public status, if it changes. */
  status?: OrderStatus;
  reason?: string;
  /** Steps to start now: their commands are sent and their replies awaited. */
  start?: Step[];
  /** Steps whose commands are sent with no reply awaited (the stock commit: nothing depends on it). */
  send?: Step[];
  /** Steps whose reply arrived. */
  done?: Step[];
  /** For a compensation: the terminal status once every awaited step is done. */
  compensateTo?: OrderStatus;
}

export interface SagaTiming {
  stepTimeoutMs: number;
}

/**
 * Where `advance` puts its effects inside a consumer's batch transaction: the
 * outgoing messages in the batch's outbox writer, the state changes in
 * `transitions`, written together by `writeTransitions` before the commit.
 */
export interface SagaBatch {
  out: OutboxWriter;
  transitions: Transition[];
}

/**
 * Applies a change to a locked order in the caller's transaction: status and
 * history, the commands of new steps and the concluded event in the outbox, the
 * step deadline, and a notice to watchers — written now, or, with `batch`,
 * collected for the batch's single write. Returns the order as it now stands.
 */
export async function advance(tx: PoolClient, order: SagaOrder, change: Change, timing: SagaTiming, batch?: SagaBatch): Promise<SagaOrder> {
  const awaiting = [...order.awaiting.filter((s) => !change.done?.includes(s)), ...(change.start ?? [])];
  const compensateTo = change.compensateTo ?? order.compensateTo;
  let status = change.status ?? order.status;
  const reason = change.reason ?? order.reason;
  if (awaiting.length === 0 && compensateTo !== undefined) status = compensateTo;
  const statusChanged = status !== order.status;
  const startedStep = (change.start?.length ?? 0) > 0;
  const concluded = statusChanged && isTerminal(status);

  const outgoing = [...(change.start ?? []), ...(change.send ?? [])].map((step) => commandFor(step, order));
  if (concluded) outgoing.push(concludedEvent(order, status, reason));
  const messages = outgoing.map((o) => ({ ...o, key: order.orderId }));
  const transition: Transition = {
    orderId: order.orderId,
    fromStatus: statusName(order.status),
    status: statusName(status),
    reason,
    awaiting,
    compensateTo: compensateTo === undefined || awaiting.length === 0 ? null : statusName(compensateTo),
    statusChanged,
    startedStep,
    concluded,
  };
  if (batch) {
    batch.out.emit(...messages);
    batch.transitions.push(transition);
  } else {
    if (messages.length > 0) await enqueueOutbox(tx, ordersSchema, messages);
    await writeTransitions(tx, [transition], timing.stepTimeoutMs);
  }

  if (concluded) {
    sagaMetrics.outcomes.inc({ status: statusName(status) });
    sagaMetrics.duration.observe({ status: statusName(status) }, (Date.now() - order.createdAt.getTime()) / 1000);
  }
  for (const step of change.done ?? []) sagaMetrics.stepLatency.observe({ step }, (Date.now() - order.stepStartedAt.getTime()) / 1000);
  return {
    ...order,
    status,
    reason,
    awaiting,
    compensateTo,
    version: order.version + (statusChanged ? 1n : 0n),
    stepStartedAt: startedStep ? new Date() : order.stepStartedAt,
  };
}
