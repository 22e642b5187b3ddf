import type { Message } from "@bufbuild/protobuf";
import { batchPerTurn } from "../../platform/batch-per-turn.js";
import { currentTraceHeaders, type OutgoingMessage } from "../../platform/bus/index.js";
import type { QueryConfig, Queryable, QueryResultRow, Statements } from "../../platform/db.js";
import { type Connections, Lane } from "../../platform/lane.js";
import { sagaMetrics } from "./metrics.js";
import { decide, readReply, type Reply } from "./orchestrator.js";
import { type Advance, planAdvance, readSagaOrders, type SagaOrder, type SagaTiming } from "./state.js";
import { InFlightOrders } from "./in-flight.js";
import { sagaRevisionOf } from "./revision.js";
import { type Transition, writeTransitionsIfUnchanged } from "./transitions.js";
import { asError } from "../../platform/errors.js";

/** A reply on its way to its order, with the trace context it arrived in. */
interface IncomingReply {
  orderId: string;
  reply: Reply;
  type: string;
  trace: Record<string, string>;
}

/** Reads and writes of one batch before its replies whose orders keep changing are handed back. */
const MAX_ROUNDS = 5;

/** An application of a batch's replies to some orders, under way: what later replies to those orders build on. */
interface Underway {
  /** Settles once the replies are applied (never rejects). */
  done: Promise<void>;
  /** The orders as its first write is to leave them, each with the revision that write gives it; settles before that write is sent. */
  planned: Promise<ReadonlyMap<string, SagaOrder>>;
  /** The connection its last write went out on. */
  lane?: Lane;
  /** Its place among the applications started. */
  sequence: number;
}

/** What one application's rounds build on and tell. */
interface Lineage {
  /** The orders as earlier applications still under way are to leave them. */
  assumed: ReadonlyMap<string, SagaOrder>;
  /** The connection to send the write on, behind theirs. */
  behind(): Lane | undefined;
  /** Records the connection this one's write went out on. */
  sent(lane: Lane): void;
  /** Tells later applications the orders as this one's first write is to leave them (absent after it). */
  announce?(orders: ReadonlyMap<string, SagaOrder>): void;
  /** Whether no later application builds on this one's write to the order. */
  latest(orderId: string): boolean;
}

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
  /** Per order, the latest application under way of a batch's replies to it. */
  private readonly underway = new Map<string, Underway>();
  private started = 0;

  /**
   * `outboxSchema`: the schema whose outbox takes the commands (the orders schema);
   * `inFlight`: the orders this replica wrote last, decided on without a read.
   */
  constructor(
    private readonly pool: Queryable & Connections,
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
   * Applies a turn's replies. The replies of one saga's checks, which run side by side, answer
   * within moments of each other: those to orders an earlier batch is still writing are decided
   * on the orders as that write is to leave them, and their write is sent at once, in a
   * statement of their own, on the connection of that write (see `Lane`). Postgres runs it as
   * soon as that write has committed, with no round trip between, and its guard finds the
   * revision that write left. Should that write fail — or, for orders of several earlier
   * writes, one on another connection not have reached its row yet — the guard fails, and
   * those replies are decided again once the earlier batch is done. The others go at once.
   */
  private async applyMany(replies: readonly IncomingReply[]): Promise<(null | Error)[]> {
    const results: (null | Error)[] = replies.map(() => null);
    const fresh: number[] = [];
    const following: number[] = [];
    const earlier = new Map<string, Underway>();
    replies.forEach((reply, index) => {
      const underway = this.underway.get(reply.orderId);
      if (underway) earlier.set(reply.orderId, underway);
      (underway ? following : fresh).push(index);
    });
    await Promise.all([this.start(replies, fresh, results, new Map()), this.start(replies, following, results, earlier)]);
    return results;
  }

  /** Applies the replies at `indexes` on what `earlier` applications are writing; later replies to their orders build on this one. */
  private start(replies: readonly IncomingReply[], indexes: readonly number[], results: (null | Error)[], earlier: ReadonlyMap<string, Underway>): Promise<void> {
    if (indexes.length === 0) return Promise.resolve();
    let announce: (orders: ReadonlyMap<string, SagaOrder>) => void = () => undefined;
    let finish: () => void = () => undefined;
    const underway: Underway = {
      planned: new Promise((resolve) => (announce = resolve)),
      done: new Promise((resolve) => (finish = resolve)),
      sequence: ++this.started,
    };
    const orderIds = [...new Set(indexes.map((index) => replies[index]!.orderId))];
    for (const orderId of orderIds) this.underway.set(orderId, underway);
    const latest = (orderId: string): boolean => this.underway.get(orderId) === underway;
    // Behind the latest of the earlier writes: the others, sent before it, are the likelier to hold their rows already.
    const behind = (): Lane | undefined => [...earlier.values()].filter((e) => e.lane).sort((a, b) => b.sequence - a.sequence)[0]?.lane;
    const sent = (lane: Lane): void => {
      underway.lane = lane;
    };
    void (async () => {
      try {
        const assumed = await this.plannedBy(earlier);
        await this.applyInRounds(replies, indexes, results, { assumed, announce, latest, behind, sent }, earlier);
      } finally {
        announce(new Map());
        for (const orderId of orderIds) if (latest(orderId)) this.underway.delete(orderId);
        finish();
      }
    })();
    return underway.done;
  }

  /** The orders as the applications in `earlier` are to leave them. */
  private async plannedBy(earlier: ReadonlyMap<string, Underway>): Promise<Map<string, SagaOrder>> {
    const assumed = new Map<string, SagaOrder>();
    for (const [orderId, underway] of earlier) {
      const order = (await underway.planned).get(orderId);
      if (order) assumed.set(orderId, order);
    }
    return assumed;
  }

  /**
   * Decides and writes the replies at `indexes`, deciding again those whose orders changed
   * meanwhile (once the `earlier` applications to them are done); fills in `results`.
   */
  private async applyInRounds(replies: readonly IncomingReply[], indexes: readonly number[], results: (null | Error)[], lineage: Lineage, earlier: ReadonlyMap<string, Underway>): Promise<void> {
    let pending = indexes;
    for (let round = 0; round < MAX_ROUNDS && pending.length > 0; round++) {
      try {
        pending = await this.round(replies, pending, round === 0 ? lineage : { ...lineage, assumed: new Map(), announce: undefined });
        if (round === 0) await Promise.all(pending.map((index) => earlier.get(replies[index]!.orderId)?.done));
      } catch (error) {
        const failure = asError(error);
        for (const index of pending) results[index] = failure;
        return;
      }
    }
    for (const index of pending) results[index] = new Error(`order ${replies[index]?.orderId} kept changing while its reply was applied; will retry`);
  }

  /** The replies' orders: as earlier applications are to leave them, as this replica last wrote them, the others read from Postgres. */
  private async ordersOf(orderIds: readonly string[], assumed: ReadonlyMap<string, SagaOrder>): Promise<{ orders: Map<string, SagaOrder>; remembered: Set<string> }> {
    const orders = new Map<string, SagaOrder>();
    const unknown: string[] = [];
    for (const orderId of orderIds) {
      const order = assumed.get(orderId) ?? this.inFlight.get(orderId);
      if (order) orders.set(orderId, order);
      else unknown.push(orderId);
    }
    const remembered = new Set(orders.keys());
    if (unknown.length > 0) for (const order of await readSagaOrders(this.pool, unknown)) orders.set(order.orderId, order);
    return { orders, remembered };
  }

  /** Decides and writes the replies at `indexes`; returns those to decide again on their orders read afresh. */
  private async round(replies: readonly IncomingReply[], indexes: readonly number[], lineage: Lineage): Promise<number[]> {
    const { orders, remembered } = await this.ordersOf(indexes.map((i) => replies[i]!.orderId), lineage.assumed);
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
    const changing = new Set(planned.map((p) => p.advance.order.orderId));
    lineage.announce?.(new Map([...orders].map(([orderId, order]) => [orderId, changing.has(orderId) ? { ...order, revision: sagaRevisionOf(order) } : order])));
    const lane: Statements = {
      query: <R extends QueryResultRow>(config: QueryConfig) => {
        const sent = Lane.query<R>(this.pool, config, lineage.behind());
        lineage.sent(sent.lane);
        return sent.result;
      },
    };
    const written = await writeTransitionsIfUnchanged(lane, { outboxSchema: this.outboxSchema, revisions, transitions, messages }, this.timing.stepTimeoutMs);
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
      // A later application builds on this write and keeps what it writes.
      if (order && lineage.latest(orderId)) this.inFlight.remember({ ...order, revision });
      else this.inFlight.forget(orderId);
    }
    const again = indexes.filter((index) => stale.has(replies[index]!.orderId) || unsure.has(replies[index]!.orderId));
    for (const index of again) if (stale.has(replies[index]!.orderId)) sagaMetrics.redecidedReplies.inc({ type: replies[index]!.type });
    for (const index of ignored) if (!stale.has(replies[index]!.orderId) && !unsure.has(replies[index]!.orderId)) sagaMetrics.ignoredReplies.inc({ type: replies[index]!.type });
    return again;
  }
}
