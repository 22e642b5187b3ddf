import type { Message, Registry } from "@bufbuild/protobuf";
import type { PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { encodeMessage, registeredType, sagaRegistry } from "./codec.js";
import type { WireEntry } from "./bundle.js";
import type { StreamPublisher } from "./jetstream-publisher.js";
import { Header } from "./names.js";
import { currentTraceHeaders } from "./trace.js";

/** A message to send: through the outbox (`enqueueOutbox`) or directly (`publishMessages`). */
export interface OutgoingMessage {
  /** e.g. `inventory.cmd.reserve` */
  subject: string;
  /** A Protobuf message created with `create(Schema, …)`; its type name goes into `of-type`. */
  message: Message;
  /** Partition key, e.g. the order id (header `of-key`; the outbox keeps per-key order). */
  key?: string;
  /**
   * Message id (Nats-Msg-Id and inbox key). Outbox: optional, a random UUID by default.
   * Direct publish: required, and deterministic (e.g. `fraud:<orderId>:assessed`) so a retry is de-duplicated.
   */
  id?: string;
  /** Extra headers (string values). */
  headers?: Record<string, string>;
}

/** Builds the NATS headers of a bus message: extra headers, trace context, type, id and key. */
export function busHeaders(fields: { type: string; id: string; key?: string | null; extra?: Record<string, string> }): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(fields.extra ?? {})) h.set(k, v);
  h.set(Header.type, fields.type);
  h.set(Header.id, fields.id);
  if (fields.key) h.set(Header.key, fields.key);
  return h;
}

/**
 * Publishes messages directly (no outbox), pipelined: all publishes are sent, then all
 * acks awaited. Each needs a deterministic `id` (the JetStream msgID). The current trace
 * context is added to the headers. For services without Postgres (fraud).
 */
export function publishMessages(publisher: StreamPublisher, messages: readonly OutgoingMessage[], registry: Registry = sagaRegistry): Promise<PubAck[]> {
  const trace = currentTraceHeaders();
  return Promise.all(
    messages.map((m) => {
      const e = encodeOutgoing({ ...m, headers: { ...m.headers, ...trace } }, registry);
      return publisher.publish(e.subject, e.payload, { msgID: e.id, headers: busHeaders({ type: e.type, id: e.id, key: e.key, extra: e.headers }) });
    }),
  );
}

/** A message to publish directly (it needs an `id`), encoded: what `bundleForWire` takes. */
export function encodeOutgoing(m: OutgoingMessage, registry: Registry = sagaRegistry): WireEntry {
  const id = directId(m);
  const { type, payload } = encodeMessage(m.message, registry);
  return { subject: m.subject, type, payload, id, key: m.key ?? null, headers: m.headers ?? {} };
}

/**
 * Throws, without encoding it, for a message `encodeOutgoing` could never send (no id, a type
 * the bus does not carry): a handler that emits one then fails by itself (in its transaction,
 * where it has one) rather than failing every message of its batch once the batch has committed.
 */
export function assertSendableDirectly(m: OutgoingMessage, registry: Registry = sagaRegistry): void {
  directId(m);
  registeredType(m.message, registry);
}

function directId(m: OutgoingMessage): string {
  if (!m.id) throw new Error(`publishing a message to ${m.subject} directly needs an id`);
  return m.id;
}

/** All headers of a message as a JSON-friendly object. */
export function headersToRecord(h: MsgHdrs | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (!h) return out;
  for (const [k, values] of h) out[k] = [...values];
  return out;
}
