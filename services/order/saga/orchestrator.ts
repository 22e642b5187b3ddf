import { isMessage, type Message } from "@bufbuild/protobuf";
import { Decision, FraudAssessedSchema } from "../../../gen/orderflow/fraud/v1/fraud_pb.js";
import { StockCommittedSchema, StockReleasedSchema, StockReservationFailedSchema, StockReservedSchema } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import { PaymentChargedSchema, PaymentDeclinedSchema, PaymentRefundedSchema } from "../../../gen/orderflow/payment/v1/payment_pb.js";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { forwardSteps, type Step } from "./commands.js";
import type { Change, SagaOrder } from "./state.js";

/** A participant's reply, reduced to what the state machine needs. */
export type Reply =
  | { kind: "fraud"; approved: boolean; reason: string }
  | { kind: "reserved" }
  | { kind: "reservationFailed"; reason: string }
  | { kind: "charged" }
  | { kind: "declined"; reason: string }
  | { kind: "committed" }
  | { kind: "released" }
  | { kind: "refunded" };

export function readReply(message: Message): { orderId: string; reply: Reply } | undefined {
  if (isMessage(message, FraudAssessedSchema)) return { orderId: message.orderId, reply: { kind: "fraud", approved: message.decision === Decision.APPROVE, reason: message.reasons.join("; ") } };
  if (isMessage(message, StockReservedSchema)) return { orderId: message.orderId, reply: { kind: "reserved" } };
  if (isMessage(message, StockReservationFailedSchema)) return { orderId: message.orderId, reply: { kind: "reservationFailed", reason: message.reason } };
  if (isMessage(message, StockCommittedSchema)) return { orderId: message.orderId, reply: { kind: "committed" } };
  if (isMessage(message, StockReleasedSchema)) return { orderId: message.orderId, reply: { kind: "released" } };
  if (isMessage(message, PaymentChargedSchema)) return { orderId: message.orderId, reply: { kind: "charged" } };
  if (isMessage(message, PaymentDeclinedSchema)) return { orderId: message.orderId, reply: { kind: "declined", reason: message.reason } };
  if (isMessage(message, PaymentRefundedSchema)) return { orderId: message.orderId, reply: { kind: "refunded" } };
  return undefined;
}

/**
 * The state machine: what a reply does to an order in its current state.
 * Undefined means the reply is stale or a duplicate and changes nothing.
 *
 * A new order awaits the fraud check, the stock reservation and the charge together (see
 * `sagaStart`): none needs another's answer. Its public status still moves forward one step
 * at a time — FRAUD_APPROVED once the check passed, STOCK_RESERVED once the stock is held
 * too, CONFIRMED once the money is taken too — so an answer that comes early is noted
 * (`stockReserved`, `charged`) and the answer that completes a status passes every status
 * it completes. Anything held or still being taken when the order fails is given back —
 * stock released, a charge refunded — before it is REJECTED.
 *
 * Orders placed with fewer steps side by side (see `SagaStartOptions`) start each remaining
 * step once the steps before it passed, as they always did.
 */
export function decide(order: SagaOrder, reply: Reply): Change | undefined {
  // A finished order (or one an order service before this one finished with a step still
  // listed as awaited) takes no forward answer: it would be moved on again.
  const forward = order.compensateTo === undefined && goingForward.has(order.status);
  const awaits = (step: Step) => forward && order.awaiting.includes(step);
  switch (reply.kind) {
    case "fraud":
      if (order.status !== OrderStatus.PENDING || !awaits("fraud")) return undefined;
      if (!reply.approved) return failForward(order, `fraud check declined: ${reply.reason}`);
      return progress(order, { done: ["fraud"] }, { fraudApproved: true });
    case "reserved":
      if (!awaits("reserve")) return undefined;
      return progress(order, { done: ["reserve"], stockReserved: true }, { stockReserved: true });
    case "reservationFailed":
      if (!awaits("reserve")) return undefined;
      return failForward(order, reply.reason, "reserve");
    case "charged":
      if (!awaits("charge")) return undefined;
      return progress(order, { done: ["charge"], charged: true }, { charged: true });
    case "declined":
      if (!awaits("charge")) return undefined;
      return failForward(order, `payment declined: ${reply.reason}`, "charge");
    case "committed":
      // Sent by inventory before commits went unanswered; an order awaiting one was
      // moved on by migration 1700000000003.
      return undefined;
    case "released":
      return order.awaiting.includes("release") ? { done: ["release"] } : undefined;
    case "refunded":
      return order.awaiting.includes("refund") ? { done: ["refund"] } : undefined;
  }
}

const goingForward: ReadonlySet<OrderStatus> = new Set([OrderStatus.PENDING, OrderStatus.FRAUD_APPROVED, OrderStatus.STOCK_RESERVED]);

/** What an order has passed, with what a reply just added. */
interface Passed {
  fraudApproved: boolean;
  stockReserved: boolean;
  charged: boolean;
}

const forwardStatuses: ReadonlyArray<{ status: OrderStatus; reason: string; passed: (p: Passed) => boolean }> = [
  { status: OrderStatus.FRAUD_APPROVED, reason: "fraud check passed", passed: (p) => p.fraudApproved },
  { status: OrderStatus.STOCK_RESERVED, reason: "stock reserved", passed: (p) => p.fraudApproved && p.stockReserved },
  { status: OrderStatus.CONFIRMED, reason: "payment charged", passed: (p) => p.fraudApproved && p.stockReserved && p.charged },
];

/**
 * A forward step passed: the statuses it completes (the last one the order's, those before it
 * passed on the way), and for an order placed with fewer steps side by side, the next step.
 */
function progress(order: SagaOrder, change: Change, added: Partial<Passed>): Change {
  const passed: Passed = {
    fraudApproved: order.status !== OrderStatus.PENDING,
    stockReserved: order.stockReserved || order.status === OrderStatus.STOCK_RESERVED,
    charged: order.charged,
    ...added,
  };
  const rank = forwardStatuses.findIndex((s) => s.status === order.status);
  const reached = forwardStatuses.filter((s, index) => index > rank && s.passed(passed));
  const last = reached.at(-1);
  const awaiting = order.awaiting.filter((s) => !change.done?.includes(s));
  const next = passed.fraudApproved ? nextStep(passed, awaiting) : undefined;
  return {
    ...change,
    ...(last ? { status: last.status, reason: last.reason } : {}),
    ...(reached.length > 1 ? { via: reached.slice(0, -1).map(({ status, reason }) => ({ status, reason })) } : {}),
    ...(next ? { start: [next] } : {}),
  };
}

/**
 * The step an order placed with fewer steps side by side starts now that the fraud check
 * passed: the reservation if it was not asked for, the charge once the stock is held.
 */
function nextStep(passed: Passed, awaiting: readonly Step[]): Step | undefined {
  if (!passed.stockReserved) return awaiting.includes("reserve") ? undefined : "reserve";
  if (!passed.charged) return awaiting.includes("charge") ? undefined : "charge";
  return undefined;
}

/** Whether the order's stock is held or being reserved (and so needs a release if it ends now). */
function stockMayBeHeld(order: SagaOrder): boolean {
  return order.stockReserved || order.status === OrderStatus.STOCK_RESERVED || order.awaiting.includes("reserve");
}

/** Whether the order's money is taken or being taken (and so needs a refund if it ends now). */
function chargeMayBeTaken(order: SagaOrder): boolean {
  return order.charged || order.awaiting.includes("charge");
}

/** What gives back what an order that ends now may hold: a release, a refund, or both. */
function undoSteps(order: SagaOrder): Step[] {
  return [...(stockMayBeHeld(order) ? (["release"] as const) : []), ...(chargeMayBeTaken(order) ? (["refund"] as const) : [])];
}

/**
 * How an order fails while going forward (`failed` said no, or its steps ran out of time):
 * every forward step still awaited is abandoned, anything held or on its way is given back at
 * once (overtaking a step still in flight, which the participant's tombstone then refuses),
 * and the order is REJECTED once that is confirmed — at once if nothing is to be given back.
 */
export function failForward(order: SagaOrder, reason: string, failed?: Step): Change {
  return abandon(order, { reason, compensateTo: OrderStatus.REJECTED }, failed);
}

/**
 * Abandons an order's forward steps for `end.compensateTo`: what it may hold is given back
 * first, or the order ends at once if nothing is. `failed` is a step that answered no and so
 * holds nothing.
 */
export function abandon(order: SagaOrder, end: { reason: string; compensateTo: OrderStatus; status?: OrderStatus }, failed?: Step): Change {
  const done = order.awaiting.filter((s) => forwardSteps.has(s));
  const undo = undoSteps(failed ? { ...order, awaiting: order.awaiting.filter((s) => s !== failed) } : order);
  if (undo.length === 0) return { status: end.compensateTo, reason: end.reason, done };
  return { ...(end.status === undefined ? {} : { status: end.status }), reason: end.reason, done, start: undo, compensateTo: end.compensateTo };
}
