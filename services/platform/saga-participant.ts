import { type DescMessage, isMessage, type Message, type MessageShape } from "@bufbuild/protobuf";
import type { SpanContext } from "@opentelemetry/api";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { Pool } from "pg";
import { type BusConsumer, type ConsumerCommonOptions, type ConsumerRoute, type OutboxWriter, startConsumer, type StreamPublisher } from "./bus/index.js";
import { currentSpanContext, currentTraceHeaders, inBatchSpan } from "./bus/trace.js";
import type { BusConnection } from "./bus-runtime.js";
import type { Database, PoolClient } from "./db.js";
import type { Worker } from "./host.js";
import type { Logger } from "./logger.js";
import { sagaRoutes } from "./saga-routes.js";

/** The event a command produces. */
export interface Reply {
  subject: string;
  message: Message;
}

/** Undefined for a command the orchestrator sends without awaiting a reply. */
type Applied = Reply | undefined;

/** Applies one command as the batch's handlers meet it. */
interface EachHandler {
  kind: "each";
  apply: (tx: PoolClient, command: Message) => Promise<Applied>;
}

/** Applies the commands of one type that a batch holds, together, with one reply per command in their order. */
interface BatchHandler {
  kind: "batch";
  apply: (tx: PoolClient, commands: Message[]) => Promise<Applied[]>;
}

type CommandHandler = EachHandler | BatchHandler;

/** Handlers by Protobuf type name of the command; build them with `on` and `onBatch`. */
export type CommandHandlers = Record<string, CommandHandler>;

function checked<D extends DescMessage>(schema: D, command: Message): MessageShape<D> {
  if (!isMessage(command, schema)) throw new Error(`expected ${schema.typeName}, got ${command.$typeName}`);
  return command;
}

/** A handler for one command type, type-checked against its schema, applied command by command. */
export function on<D extends DescMessage>(schema: D, apply: (tx: PoolClient, command: MessageShape<D>) => Promise<Applied>): [string, CommandHandler] {
  return [schema.typeName, { kind: "each", apply: (tx, command) => apply(tx, checked(schema, command)) }];
}

/**
 * A handler for one command type whose commands in a batch are applied together (e.g. by
 * one statement), after the batch's handlers have run or before the first command of a type
 * handled by `on`, whichever comes first: that command sees their effects. Commands of
 * different `onBatch` types are applied type by type, in the order the handlers are listed.
 * An order keeps the order of its own commands: one whose key has a command of another type
 * waiting has what waits applied first. Across orders, then, a type listed later runs after
 * one listed earlier whatever their messages' order, so list first what only gives back (a
 * release, a refund): what takes (a reservation, a charge) then finds at least what it would
 * have found one message after another. Returns one reply (or undefined) per command, in
 * their order; a batch of one must be handled too (a failing batch transaction is retried
 * message by message).
 */
export function onBatch<D extends DescMessage>(schema: D, apply: (tx: PoolClient, commands: MessageShape<D>[]) => Promise<Applied[]>): [string, CommandHandler] {
  return [schema.typeName, { kind: "batch", apply: (tx, commands) => apply(tx, commands.map((c) => checked(schema, c))) }];
}

/**
 * For an `onBatch` handler that decides each order once: `decide` gets the first command of
 * each order, in batch order, and returns the replies of the orders it decided; every other
 * command (an order met again in the batch, or one `decide` left to `each`, such as an order
 * with a recorded outcome) then goes through `each`, one after another in batch order.
 * Returns the replies in the commands' order.
 */
export async function decidedOncePerOrder<C extends { orderId: string }, R>(
  commands: readonly C[],
  decide: (firsts: C[]) => Promise<ReadonlyMap<string, R>>,
  each: (command: C) => Promise<R>,
): Promise<R[]> {
  const firstIndexOf = new Map<string, number>();
  for (const [i, { orderId }] of commands.entries()) if (!firstIndexOf.has(orderId)) firstIndexOf.set(orderId, i);
  const decided = await decide([...firstIndexOf.values()].map((i) => commands[i]!));
  const replies: R[] = [];
  for (const [i, command] of commands.entries()) {
    const reply = firstIndexOf.get(command.orderId) === i ? decided.get(command.orderId) : undefined;
    replies.push(reply ?? (await each(command)));
  }
  return replies;
}

export interface CommandConsumerOptions {
  js: JetStreamClient;
  /** The pool of the transactions (the service's background pool). */
  pool: Pool;
  /** Takes the replies, once their transaction has committed. */
  publisher: StreamPublisher;
  /** The service's schema. */
  schema: string;
  /** Consumes `<domain>.cmd.>` from the domain's stream. */
  domain: string;
  handlers: CommandHandlers;
  logger?: Logger;
  /** Runs in each batch transaction before the handlers (see startConsumer's beforeBatch). */
  beforeBatch?: (tx: PoolClient, commands: Message[]) => Promise<void>;
  /** Consumer settings other than the defaults (tests: their own dead-letter stream, quick retries). */
  consumer?: Partial<Pick<ConsumerCommonOptions, "batchSize" | "maxDeliver" | "backoffMs" | "dlq">>;
}

/**
 * Another domain's events a participant acts on, with no reply: e.g. inventory commits the
 * stock of an order once the order's `order.evt.confirmed` is out, so the orchestrator sends
 * no command for it.
 */
export interface EventSubscription {
  /** Where the events are read, e.g. `sagaRoutes.stockCommits()`. */
  route: ConsumerRoute;
  /** Handlers by event type; what they return is ignored (events get no reply). */
  handlers: CommandHandlers;
}

export interface EventConsumerOptions extends EventSubscription {
  js: JetStreamClient;
  pool: Pool;
  schema: string;
  logger?: Logger;
  consumer?: CommandConsumerOptions["consumer"];
}

export interface ParticipantOptions extends Omit<CommandConsumerOptions, "js" | "pool" | "publisher"> {
  bus: BusConnection;
  db: Database;
  logger: Logger;
  /** Events of other domains the participant acts on. */
  events?: readonly EventSubscription[];
}

interface Collected<T> {
  command: Message;
  item: T;
  /** The span of the command's delivery: the batch's statements are traced from it. */
  origin: SpanContext | undefined;
}

/** What happens to a command's reply once it is applied; `item` says whose it is. */
type Done<T> = (item: T, reply: Applied) => void;

/**
 * Applies the commands of a batch in one transaction: those of `onBatch` types are collected
 * (by type) and applied together, type by type in the handlers' order, before the next
 * command of an `on` type, before a command of another type for an order already collected,
 * or at `finish`.
 */
class BatchApplication<T> {
  private readonly byType = new Map<string, { handler: BatchHandler; commands: Collected<T>[] }>();
  /** The type each collected order's commands were collected under. */
  private readonly typeOfKey = new Map<string, string>();
  private readonly rank: ReadonlyMap<string, number>;

  constructor(private readonly handlers: CommandHandlers) {
    this.rank = new Map(Object.keys(handlers).map((typeName, i) => [typeName, i]));
  }

  clear(): void {
    this.byType.clear();
    this.typeOfKey.clear();
  }

  /** The next command of the batch; `key` is its order's ("" for none). */
  async meet(tx: PoolClient, command: Message, key: string, item: T, done: Done<T>): Promise<void> {
    const typeName = command.$typeName;
    const handler = this.handlers[typeName];
    if (!handler) throw new Error(`no handler for ${typeName}`);
    if (handler.kind === "batch") {
      const collectedAs = key === "" ? undefined : this.typeOfKey.get(key);
      if (collectedAs !== undefined && collectedAs !== typeName) await this.finish(tx, done);
      let group = this.byType.get(typeName);
      if (!group) this.byType.set(typeName, (group = { handler, commands: [] }));
      group.commands.push({ command, item, origin: currentSpanContext() });
      if (key !== "") this.typeOfKey.set(key, typeName);
      return;
    }
    await this.finish(tx, done);
    done(item, await handler.apply(tx, command));
  }

  /** Applies what was collected. */
  async finish(tx: PoolClient, done: Done<T>): Promise<void> {
    const groups = [...this.byType.entries()].sort(([a], [b]) => this.rank.get(a)! - this.rank.get(b)!);
    this.clear();
    for (const [typeName, { handler, commands }] of groups) {
      const replies = await inBatchSpan(
        `${typeName} apply`,
        commands.map((c) => c.origin),
        () => handler.apply(tx, commands.map((c) => c.command)),
      );
      if (replies.length !== commands.length) throw new Error(`a batch handler returned ${replies.length} replies for ${commands.length} commands`);
      replies.forEach((reply, i) => done(commands[i]!.item, reply));
    }
  }
}

/** The order a saga command is for: its `order_id`. */
function orderIdOf(command: Message): string {
  const orderId = "orderId" in command ? command.orderId : undefined;
  return typeof orderId === "string" ? orderId : "";
}

/**
 * Applies commands in `tx` as the participant's consumer applies a batch of them (keyed, as
 * the order service sends them, by their order); returns their replies in order.
 */
export async function applyCommands(tx: PoolClient, handlers: CommandHandlers, commands: readonly Message[]): Promise<Applied[]> {
  const replies: Applied[] = [];
  const batch = new BatchApplication<number>(handlers);
  const done: Done<number> = (i, reply) => {
    replies[i] = reply;
  };
  for (const [i, command] of commands.entries()) await batch.meet(tx, command, orderIdOf(command), i, done);
  await batch.finish(tx, done);
  return replies;
}

/** The reply's JetStream msgID: a redelivered command's reply is the same message, which JetStream drops. */
function replyIdOf(commandId: string): string {
  return `${commandId}:reply`;
}

/** Whose reply it is. */
interface CommandOrigin {
  id: string;
  key: string;
  trace: Record<string, string>;
}

/**
 * Consumes `<domain>.cmd.>`, applies a batch of commands in one transaction and, once it has
 * committed, publishes their replies; acks the commands when JetStream has the replies. No inbox
 * and no outbox: every command is idempotent by its order (a redelivered or re-sent command
 * changes nothing and gets the recorded outcome again; docs/saga-contract.md), so a command
 * whose reply was lost to a crash comes back and is answered again.
 */
export function startCommandConsumer(options: CommandConsumerOptions): Promise<BusConsumer> {
  const { domain } = options;
  const batch = new BatchApplication<CommandOrigin>(options.handlers);
  const emitTo =
    (out: OutboxWriter): Done<CommandOrigin> =>
    ({ id, key, trace }, reply) => {
      if (reply) out.emit({ subject: reply.subject, message: reply.message, key, id: replyIdOf(id), headers: trace });
    };
  return startConsumer({
    js: options.js,
    pool: options.pool,
    schema: options.schema,
    inbox: false,
    publishEmitted: options.publisher,
    ...sagaRoutes.commands(domain),
    ...(options.logger ? { logger: options.logger } : {}),
    ...options.consumer,
    beforeBatch: async (tx, deliveries) => {
      batch.clear();
      await options.beforeBatch?.(
        tx,
        deliveries.map((d) => d.message),
      );
    },
    // A reply continues the trace of its delivery, whose span is the active one while it is met.
    handle: (delivery, tx, out) => batch.meet(tx, delivery.message, delivery.key, { id: delivery.id, key: delivery.key, trace: currentTraceHeaders() }, emitTo(out)),
    afterBatch: (tx, out) => batch.finish(tx, emitTo(out)),
  });
}

/**
 * Consumes another domain's events and applies a batch of them in one transaction, like
 * commands (`on` / `onBatch` handlers), without replies. Handlers must be idempotent by key:
 * a redelivered event is applied again and must change nothing.
 */
export function startEventConsumer(options: EventConsumerOptions): Promise<BusConsumer> {
  const batch = new BatchApplication<null>(options.handlers);
  const noReply: Done<null> = () => undefined;
  return startConsumer({
    js: options.js,
    pool: options.pool,
    schema: options.schema,
    inbox: false,
    ...options.route,
    ...(options.logger ? { logger: options.logger } : {}),
    ...options.consumer,
    beforeBatch: async () => batch.clear(),
    handle: (delivery, tx) => batch.meet(tx, delivery.message, delivery.key, null, noReply),
    afterBatch: (tx) => batch.finish(tx, noReply),
  });
}

/** Runs a saga participant that keeps state in Postgres: its command consumer and its event consumers. */
export async function startParticipant(options: ParticipantOptions): Promise<Worker[]> {
  const { bus, db } = options;
  const common = { js: bus.js, pool: db.background, schema: options.schema, logger: options.logger, ...(options.consumer ? { consumer: options.consumer } : {}) };
  const workers: Worker[] = [await startCommandConsumer({ ...options, js: bus.js, pool: db.background, publisher: bus.publisher })];
  for (const events of options.events ?? []) workers.push(await startEventConsumer({ ...common, ...events }));
  return workers;
}
