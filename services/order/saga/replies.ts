import type { Message } from "@bufbuild/protobuf";
import { batchPerTurn } from "../../platform/batch-per-turn.js";
import { currentTraceHeaders, type OutgoingMessage } from "../../platform/bus/index.js";
import type { Queryable } from "../../platform/db.js";
import { sagaMetrics } from "./metrics.js";
import { decide, readReply, type Reply } from "./orchestrator.js";
import { type Advance, planAdvance, readSagaOrders, type SagaOrder, type SagaTiming } from "./state.js";
import { InFlightOrders } from "./in-flight.js";
import { type Transition, writeTransitionsIfUnchanged } from "./transitions.js";

/** The durable consumer through which the order service takes a domain's replies. */
export function replyConsumerName(domain: string): string {
  return `order-${domain}-events`;
}

/** A reply on its way to its order, with the trace context it arrived in. */
interface IncomingReply {
  orderId: string;
  reply: Reply;
  type: string;
  trace: Record<string, string>;
}

/** Reads and writes of one batch before its replies whose orders keep changing are handed back. */
const MAX_ROUNDS = 5;

/**
 * Applies participants' replies to their orders. The replies of one turn of the event loop
 * are one batch: one statement reads their orders (no lock, no transaction), the state
 * machine decides each reply in arrival order, and one statement writes every change —
 * rows, history, notices and outgoing messages — guarded by the saga revisions read. A reply
 * whose order moved on in between (a cancellation, a timed-out step, another replica) is
 * decided again on the order as it now stands.
 *
 * Replies need no inbox: a duplicate or late reply matches no awaited step and changes
 * nothing (see `decide`), so redelivery after a crash or a lost ack is harmless.
 */
export class ReplyApplier {
  private readonly batches = batchPerTurn<IncomingReply, null>((replies) => this.applyMany(replies), 200);
  /** Per order, the application under way of an earlier batch's replies to it. */
  private readonly writing = new Map<string, Promise<void>>();

  /**
   * `outboxSchema`: the schema whose outbox takes the commands (the orders schema);
   * `inFlight`: the orders this replica wrote last, decided on without a read.
   */
  constructor(
    private readonly q: Queryable,
    private readonly timing: SagaTiming,
    private readonly outboxSchema: string,
    private readonly inFlight = new InFlightOrders(),
  ) {}

  /** Resolves once the reply is written (or found to change nothing). */
  apply(message: Message): Promise<null> {
    const read = readReply(message);
    if (!read) return Promise.reject(new Error(`the order saga does not handle ${message.$typeName}`));
    return this.batches.load({ ...read, type: message.$typeName, trace: currentTraceHeaders() });
  }

  /**
   * Applies a turn's replies. Those to orders an earlier batch is still writing wait for that
   * write, then are decided on the order as it left it: the replies of one saga's checks,
   * which run side by side and answer together, would otherwise be decided on the same
   * revision in two batches, and the later write would fail its guard and pay a read and a
   * write more. The others go at once.
   */
  private async applyMany(replies: readonly IncomingReply[]): Promise<(null | Error)[]> {
    const results: (null | Error)[] = replies.map(() => null);
    const now: number[] = [];
    const later: number[] = [];
    const earlier = new Set<Promise<void>>();
    replies.forEach((reply, index) => {
      const writing = this.writing.get(reply.orderId);
      if (writing) earlier.add(writing);
      (writing ? later : now).push(index);
    });
    const run = (indexes: number[], after?: Promise<unknown>): Promise<void> => {
      if (indexes.length === 0) return Promise.resolve();
      const done = (async () => {
        await after;
        await this.applyInRounds(replies, indexes, results);
      })();
      this.markWriting(indexes.map((index) => replies[index]!.orderId), done);
      return done;
    };
    await Promise.all([run(now), run(later, Promise.all(earlier))]);
    return results;
  }

  /** Decides and writes the replies at `indexes`, deciding again those whose orders changed meanwhile; fills in `results`. */
  private async applyInRounds(replies: readonly IncomingReply[], indexes: readonly number[], results: (null | Error)[]): Promise<void> {
    let pending = indexes;
    for (let round = 0; round < MAX_ROUNDS && pending.length > 0; round++) {
      try {
        pending = await this.round(replies, pending);
      } catch (error) {
        const failure = error instanceof Error ? error : new Error(String(error));
        for (const index of pending) results[index] = failure;
        return;
      }
    }
    for (const index of pending) results[index] = new Error(`order ${replies[index]?.orderId} kept changing while its reply was applied; will retry`);
  }

  /** Makes later batches' replies to `orderIds` wait for `done` (which never rejects). */
  private markWriting(orderIds: readonly string[], done: Promise<void>): void {
    for (const orderId of orderIds) this.writing.set(orderId, done);
    void done.then(() => {
      for (const orderId of orderIds) if (this.writing.get(orderId) === done) this.writing.delete(orderId);
    });
  }

  /** The replies' orders: as this replica last wrote them, the others read from Postgres. */
  private async ordersOf(orderIds: readonly string[]): Promise<{ orders: Map<string, SagaOrder>; remembered: Set<string> }> {
    const orders = new Map<string, SagaOrder>();
    const unknown: string[] = [];
    for (const orderId of orderIds) {
      const order = this.inFlight.get(orderId);
      if (order) orders.set(orderId, order);
      else unknown.push(orderId);
    }
    const remembered = new Set(orders.keys());
    if (unknown.length > 0) for (const order of await readSagaOrders(this.q, unknown)) orders.set(order.orderId, order);
    return { orders, remembered };
  }

  /** Decides and writes the replies at `indexes`; returns those to decide again on their orders read afresh. */
  private async round(replies: readonly IncomingReply[], indexes: readonly number[]): Promise<number[]> {
    const { orders, remembered } = await this.ordersOf(indexes.map((i) => replies[i]!.orderId));
    const revisions = new Map([...orders].map(([orderId, order]) => [orderId, order.revision]));
    const planned: Array<{ index: number; advance: Advance }> = [];
    const transitions: Transition[] = [];
    const messages: OutgoingMessage[] = [];
    const ignored: number[] = [];
    for (const index of indexes) {
      const incoming = replies[index]!;
      const order = orders.get(incoming.orderId);
      const change = order && decide(order, incoming.reply);
      if (!order || !change) {
        ignored.push(index);
        continue;
      }
      const advance = planAdvance(order, change);
      orders.set(order.orderId, advance.order);
      planned.push({ index, advance });
      transitions.push(...advance.transitions);
      // The commands a reply causes continue the reply's trace.
      messages.push(...advance.messages.map((m) => ({ ...m, headers: { ...incoming.trace, ...m.headers } })));
    }
    const written = await writeTransitionsIfUnchanged(this.q, { outboxSchema: this.outboxSchema, revisions, transitions, messages }, this.timing.stepTimeoutMs);
    const changedMeanwhile = new Set<number>();
    for (const { index, advance } of planned) {
      if (written.has(advance.order.orderId)) advance.record();
      else changedMeanwhile.add(index);
    }
    // Every reply to an order that changed is decided again, also those that changed nothing;
    // so is a reply ignored on a remembered order, which may have moved on elsewhere since.
    const stale = new Set(planned.filter((p) => changedMeanwhile.has(p.index)).map((p) => p.advance.order.orderId));
    const unsure = new Set(ignored.map((index) => replies[index]!.orderId).filter((orderId) => remembered.has(orderId) && !written.has(orderId)));
    for (const orderId of [...stale, ...unsure]) this.inFlight.forget(orderId);
    for (const [orderId, revision] of written) {
      const order = orders.get(orderId);
      if (order) this.inFlight.remember({ ...order, revision });
    }
    const again = indexes.filter((index) => stale.has(replies[index]!.orderId) || unsure.has(replies[index]!.orderId));
    for (const index of again) if (stale.has(replies[index]!.orderId)) sagaMetrics.redecidedReplies.inc({ type: replies[index]!.type });
    for (const index of ignored) if (!stale.has(replies[index]!.orderId) && !unsure.has(replies[index]!.orderId)) sagaMetrics.ignoredReplies.inc({ type: replies[index]!.type });
    return again;
  }
}
