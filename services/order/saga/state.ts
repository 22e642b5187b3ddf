import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { enqueueOutbox, type OutgoingMessage } from "../../platform/bus/index.js";
import { type PoolClient, prepared, type Queryable } from "../../platform/db.js";
import { isTerminal, statusFromName, statusName } from "../domain/status.js";
import { commandFor, concludedEvent, type Step } from "./commands.js";
import { type ItemRow, itemsJson } from "../store.js";
import { sagaMetrics } from "./metrics.js";
import { sagaRevision } from "./revision.js";
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
  /** Whether inventory answered the reservation with the stock held (it may before the fraud check ends). */
  stockReserved: boolean;
  /** Whether payment answered the charge with the money taken (it may before the other steps end). */
  charged: boolean;
  /** The order's lines, in order (what a reservation asks for). */
  lines: Array<{ sku: string; quantity: bigint }>;
  /** The saga revision read (see `sagaRevision`): a write guarded by it fails if the saga moved on since. */
  revision: string;
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
  stock_reserved: boolean;
  charged: boolean;
  items: ItemRow[];
  revision: string;
}

// The lines come with the lock: one round trip less when the reservation step starts. The steps
// awaited come as JSON: JSON.parse reads them in under half the time node-postgres's array parser takes.
const sagaColumns = `order_id, customer_id, status, version, total_minor, currency, array_to_json(awaiting) AS awaiting, step_attempts, compensate_to, status_reason, created_at, step_started_at, stock_reserved, charged, ${itemsJson}, ${sagaRevision()} AS revision`;

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
    stockReserved: row.stock_reserved,
    charged: row.charged,
    lines: row.items.map((i) => ({ sku: i.sku, quantity: BigInt(i.quantity) })),
    revision: row.revision,
  };
}

/** Locks the order's row for the rest of the transaction. */
export async function lockOrder(tx: Queryable, orderId: string): Promise<SagaOrder | undefined> {
  const { rows } = await tx.query<SagaRow>(prepared(`SELECT ${sagaColumns} FROM orders WHERE order_id = $1 FOR UPDATE`, [orderId]));
  return rows[0] && toSagaOrder(rows[0]);
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Several orders as they stand, without locking them (see `writeTransitionsIfUnchanged`). */
export async function readSagaOrders(q: Queryable, orderIds: readonly string[]): Promise<SagaOrder[]> {
  const uuids = [...new Set(orderIds.filter((id) => uuidPattern.test(id)))];
  if (uuids.length === 0) return [];
  const { rows } = await q.query<SagaRow>(prepared(`SELECT ${sagaColumns} FROM orders WHERE order_id = ANY($1::uuid[])`, [uuids]));
  return rows.map(toSagaOrder);
}

const overdueOrders = "FROM orders WHERE in_flight AND step_deadline < now() ORDER BY step_deadline LIMIT $1";

/** The steps the first `limit` overdue orders await, read without locking them. */
export async function overdueSteps(q: Queryable, limit: number): Promise<Set<Step>> {
  const { rows } = await q.query<{ step: Step }>(prepared(`SELECT DISTINCT unnest(awaiting) AS step FROM (SELECT awaiting ${overdueOrders}) o`, [limit]));
  return new Set(rows.map((r) => r.step));
}

/** Orders whose step deadline passed, locked, skipping those another replica holds. */
export async function lockOverdue(tx: Queryable, limit: number): Promise<SagaOrder[]> {
  const { rows } = await tx.query<SagaRow>(`SELECT ${sagaColumns} ${overdueOrders} FOR UPDATE SKIP LOCKED`, [limit]);
  return rows.map(toSagaOrder);
}

export interface Change {
  /** New public status, if it changes. */
  status?: OrderStatus;
  reason?: string;
  /** Steps to start now: their commands are sent and their replies awaited. */
  start?: Step[];
  /** Steps whose reply arrived. */
  done?: Step[];
  /** For a compensation: the terminal status once every awaited step is done. */
  compensateTo?: OrderStatus;
  /** Statuses the order passes through on its way to `status`, in order, each with its own history entry. */
  via?: ReadonlyArray<{ status: OrderStatus; reason: string }>;
  /** Inventory holds the order's stock. */
  stockReserved?: boolean;
  /** Payment took the order's money. */
  charged?: boolean;
}

export interface SagaTiming {
  stepTimeoutMs: number;
}

/** What a change does to an order: its new state, the row update, the messages it sends. */
export interface Advance {
  order: SagaOrder;
  /** The row's update, one per status passed (see `Change.via`). */
  transitions: Transition[];
  messages: OutgoingMessage[];
  /** Counts the change in the saga metrics; call once it is written. */
  record(): void;
}

/** Works out what `change` does to `order`, writing nothing. */
export function planAdvance(order: SagaOrder, change: Change): Advance {
  const awaiting = [...order.awaiting.filter((s) => !change.done?.includes(s)), ...(change.start ?? [])];
  const compensateTo = change.compensateTo ?? order.compensateTo;
  let status = change.status ?? order.status;
  const reason = change.reason ?? order.reason;
  if (awaiting.length === 0 && compensateTo !== undefined) status = compensateTo;
  const stockReserved = change.stockReserved ?? order.stockReserved;
  const charged = change.charged ?? order.charged;
  const via = change.via ?? [];
  const statusChanged = status !== order.status;
  const startedStep = (change.start?.length ?? 0) > 0;
  const concluded = statusChanged && isTerminal(status);

  const outgoing = (change.start ?? []).map((step) => commandFor(step, order));
  if (concluded) outgoing.push(concludedEvent(order, status, reason));
  const transition: Transition = {
    orderId: order.orderId,
    fromStatus: statusName(via.at(-1)?.status ?? order.status),
    status: statusName(status),
    reason,
    awaiting,
    compensateTo: compensateTo === undefined || awaiting.length === 0 ? null : statusName(compensateTo),
    stockReserved,
    charged,
    statusChanged,
    startedStep,
    concluded,
  };
  const passed: Transition[] = via.map((v, index) => ({
    ...transition,
    fromStatus: statusName(index === 0 ? order.status : via[index - 1]!.status),
    status: statusName(v.status),
    reason: v.reason,
    concluded: false,
  }));
  return {
    order: {
      ...order,
      status,
      reason,
      awaiting,
      compensateTo,
      stockReserved,
      charged,
      version: order.version + (statusChanged ? 1n : 0n) + BigInt(via.length),
      attempts: startedStep ? 1 : order.attempts,
      stepStartedAt: startedStep ? new Date() : order.stepStartedAt,
    },
    transitions: [...passed, transition],
    messages: outgoing.map((o) => ({ ...o, key: order.orderId })),
    record: () => {
      if (concluded) {
        sagaMetrics.outcomes.inc({ status: statusName(status) });
        sagaMetrics.duration.observe({ status: statusName(status) }, (Date.now() - order.createdAt.getTime()) / 1000);
      }
      for (const step of change.done ?? []) sagaMetrics.stepLatency.observe({ step }, (Date.now() - order.stepStartedAt.getTime()) / 1000);
    },
  };
}

/**
 * Applies a change to an order locked in the caller's transaction: status and history,
 * the commands of new steps and the concluded event in the outbox, the step deadline,
 * and a notice to watchers. Returns the order as it now stands.
 */
export async function advance(tx: PoolClient, order: SagaOrder, change: Change, timing: SagaTiming): Promise<SagaOrder> {
  const planned = planAdvance(order, change);
  if (planned.messages.length > 0) await enqueueOutbox(tx, ordersSchema, planned.messages);
  await writeTransitions(tx, planned.transitions, timing.stepTimeoutMs);
  planned.record();
  return planned.order;
}
