import { type DescMessage, isMessage, type Message, type MessageShape } from "@bufbuild/protobuf";
import { type BusConsumer, commandConsumerName, type Delivery, OutboxRelay, startConsumer, streamName } from "./bus/index.js";
import type { BusConnection } from "./bus-runtime.js";
import type { Database, PoolClient } from "./db.js";
import type { Worker } from "./host.js";
import type { Logger } from "./logger.js";

/** The event a command produces. */
export interface Reply {
  subject: string;
  message: Message;
}

/** Undefined for a command the orchestrator sends without awaiting a reply. */
type CommandHandler = (tx: PoolClient, command: Message) => Promise<Reply | undefined>;

/** Handlers by Protobuf type name of the command; build them with `on`. */
export type CommandHandlers = Record<string, CommandHandler>;

/** A handler for one command type, type-checked against its schema. */
export function on<D extends DescMessage>(schema: D, handle: (tx: PoolClient, command: MessageShape<D>) => Promise<Reply | undefined>): [string, CommandHandler] {
  return [
    schema.typeName,
    (tx, command) => {
      if (!isMessage(command, schema)) throw new Error(`expected ${schema.typeName}, got ${command.$typeName}`);
      return handle(tx, command);
    },
  ];
}

export interface ParticipantOptions {
  bus: BusConnection;
  db: Database;
  schema: string;
  domain: string;
  handlers: CommandHandlers;
  logger: Logger;
  batchSize?: number;
  /** Runs in each batch transaction before the handlers (see startConsumer's beforeBatch). */
  beforeBatch?: (tx: PoolClient, commands: Message[]) => Promise<void>;
  /** Runs in each batch transaction after the handlers (see startConsumer's afterBatch). */
  afterBatch?: (tx: PoolClient) => Promise<void>;
}

/**
 * Runs a saga participant that keeps state in Postgres: consumes
 * `<domain>.cmd.>` with the inbox, applies each command and enqueues its reply
 * (if it has one) in the same transaction, and relays the outbox to JetStream.
 */
export async function startParticipant(options: ParticipantOptions): Promise<Worker[]> {
  const { bus, db, schema, domain, handlers, logger } = options;
  const relay = new OutboxRelay({ pool: db.background, schema, publisher: bus.publisher, logger }).start();
  const consumer: BusConsumer = await startConsumer({
    js: bus.js,
    pool: db.background,
    schema,
    stream: streamName(domain),
    durable: commandConsumerName(domain),
    filterSubject: `${domain}.cmd.>`,
    logger,
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    ...(options.beforeBatch === undefined ? {} : { beforeBatch: (tx: PoolClient, deliveries: Delivery[]) => options.beforeBatch!(tx, deliveries.map((d) => d.message)) }),
    ...(options.afterBatch === undefined ? {} : { afterBatch: options.afterBatch }),
    handle: async (delivery, tx, out) => {
      const handler = handlers[delivery.type];
      if (!handler) throw new Error(`${domain} has no handler for ${delivery.type}`);
      const reply = await handler(tx, delivery.message);
      if (reply) out.emit({ subject: reply.subject, message: reply.message, key: delivery.key });
    },
  });
  return [consumer, relay];
}
