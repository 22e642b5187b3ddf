/**
 * Names shared by every part of the bus: stream names, the dead-letter stream and
 * the message headers we set. Stream names and the DLQ are configurable so tests
 * (and several environments on one NATS) can use their own.
 */

/** Where dead letters go: a stream capturing `<subjectPrefix>.>`. */
export interface DlqConfig {
  stream: string;
  subjectPrefix: string;
}

export const DEFAULT_DLQ: DlqConfig = { stream: "DLQ", subjectPrefix: "dlq" };

/** Stream of a domain: `order` -> `ORDER` (capturing `order.>`, or `order.evt.>` when its commands have a stream of their own). */
export function streamName(domain: string): string {
  return domain.toUpperCase().replace(/[^A-Z0-9_-]/g, "_");
}

/** Stream of a domain's commands, where they have one: `inventory` -> `INVENTORY_COMMANDS` (capturing `inventory.cmd.>`). */
export function commandStreamName(domain: string): string {
  return `${streamName(domain)}_COMMANDS`;
}

/** The durable consumer through which a saga participant takes its domain's commands. */
export function commandConsumerName(domain: string): string {
  return `${domain}-commands`;
}

/** Headers carried by every bus message. */
export const Header = {
  /** JetStream de-duplication id (set through the publish `msgID` option). */
  msgId: "Nats-Msg-Id",
  /** Fully-qualified Protobuf type name of the payload, e.g. `orderflow.inventory.v1.ReserveStock`. */
  type: "of-type",
  /** Logical message id: the inbox key. Equal to Nats-Msg-Id, except on replays from the DLQ, which keep the original id. */
  id: "of-id",
  /** Partition key (e.g. the order id), used for ordering and logs. */
  key: "of-key",
  /** On a bundle (of-type orderflow.bus.v1.Bundle): how many messages it carries. */
  count: "of-count",
  /** W3C trace context. */
  traceparent: "traceparent",
  tracestate: "tracestate",
  /** Set on a message re-driven from the DLQ: the DLQ sequence it came from. */
  replayOf: "of-replay-of",
} as const;

/** Headers of a dead letter (the payload is the original payload, unchanged). */
export const DlqHeader = {
  subject: "of-dlq-subject",
  stream: "of-dlq-stream",
  streamSeq: "of-dlq-seq",
  deliveries: "of-dlq-deliveries",
  error: "of-dlq-error",
  consumer: "of-dlq-consumer",
  time: "of-dlq-time",
  /** JSON object of the original headers: `{ "<name>": ["<value>", ...] }`. */
  headers: "of-dlq-headers",
} as const;

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/** Validates a Postgres schema name (lower-case identifier) and returns it double-quoted. */
export function quoteSchema(schema: string): string {
  if (!IDENT.test(schema)) throw new Error(`invalid schema name "${schema}": use a lower-case SQL identifier`);
  return `"${schema}"`;
}

/** NOTIFY channel the outbox of `schema` signals on. */
export function outboxChannel(schema: string): string {
  quoteSchema(schema);
  return `${schema}_outbox`;
}
