import { hash } from "node:crypto";
import { create, fromBinary, toBinary, type Registry } from "@bufbuild/protobuf";
import type { PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { BundleEntrySchema, BundleSchema } from "../../../gen/orderflow/bus/v1/bundle_pb.js";
import { DecodeError, sagaRegistry } from "./codec.js";
import { messageIdOf } from "./dlq.js";
import type { StreamPublisher } from "./jetstream-publisher.js";
import { Header } from "./names.js";
import { busHeaders, encodeOutgoing, type OutgoingMessage } from "./publish.js";

/** `of-type` of a JetStream message that carries several bus messages (see bundle.proto). */
export const BUNDLE_TYPE = BundleSchema.typeName;

/**
 * Most messages one JetStream message carries. Bounds a bundle's size (entries are a few
 * hundred bytes; JetStream takes 1 MB) and the work one redelivery repeats.
 */
export const DEFAULT_BUNDLE_MAX = 64;

/** A bus message ready to send: encoded payload and the fields its headers carry. */
export interface WireEntry {
  subject: string;
  type: string;
  payload: Uint8Array;
  /** Message id: Nats-Msg-Id when sent alone, the entry's id in a bundle. */
  id: string;
  key: string | null;
  /** Extra headers (trace context, …). */
  headers: Record<string, string>;
}

/** One JetStream publish: a single message, or a bundle of `size` of them. */
export interface WireMessage {
  subject: string;
  payload: Uint8Array;
  msgID: string;
  headers: MsgHdrs;
  size: number;
  /** Where its messages were in the list given to `bundleForWire`. */
  positions: readonly number[];
}

/** A bus message as a consumer reads it, from a JetStream message or a bundle's entry. */
export interface ReceivedEntry {
  id: string;
  key: string;
  type: string;
  payload: Uint8Array;
  headers: MsgHdrs | undefined;
}

/**
 * What to publish for `entries`, in order: those of one subject go together, up to `max` per
 * JetStream message, as long as no message of the same key waits in a later one — so the
 * messages of a key keep their order. A group of one is sent as a plain message (its own id
 * as Nats-Msg-Id). A bundle's Nats-Msg-Id is a digest of its entries' ids, so re-sending the
 * same entries together is de-duplicated by JetStream; entries re-sent in another grouping
 * arrive twice, which every consumer of the saga tolerates (docs/saga-contract.md).
 */
export function bundleForWire(entries: readonly WireEntry[], max = DEFAULT_BUNDLE_MAX): WireMessage[] {
  const groups: number[][] = [];
  const openGroupOfSubject = new Map<string, number>();
  const lastGroupOfKey = new Map<string, number>();
  for (const [position, e] of entries.entries()) {
    let g = openGroupOfSubject.get(e.subject);
    const group = g === undefined ? undefined : groups[g];
    const keyLater = e.key !== null && g !== undefined && (lastGroupOfKey.get(e.key) ?? -1) > g;
    if (g === undefined || !group || group.length >= max || keyLater) {
      g = groups.length;
      groups.push([position]);
      openGroupOfSubject.set(e.subject, g);
    } else {
      group.push(position);
    }
    if (e.key !== null) lastGroupOfKey.set(e.key, g);
  }
  return groups.map((positions) => toWire(positions.map((position) => entries[position] as WireEntry), positions));
}

function toWire(group: readonly WireEntry[], positions: readonly number[]): WireMessage {
  const [first] = group;
  if (!first) throw new Error("empty bundle");
  if (group.length === 1) {
    return { subject: first.subject, payload: first.payload, msgID: first.id, headers: busHeaders({ type: first.type, id: first.id, key: first.key, extra: first.headers }), size: 1, positions };
  }
  const bundle = create(BundleSchema, {
    entries: group.map((e) => create(BundleEntrySchema, { id: e.id, key: e.key ?? "", type: e.type, payload: e.payload, headers: e.headers })),
  });
  const msgID = `bundle:${hash("sha256", group.map((e) => e.id).join("\n"), "base64url")}`;
  const headers = busHeaders({ type: BUNDLE_TYPE, id: msgID });
  headers.set(Header.count, String(group.length));
  return { subject: first.subject, payload: toBinary(BundleSchema, bundle), msgID, headers, size: group.length, positions };
}

/** How many bus messages a JetStream message carries (1 unless it is a bundle). */
export function sizeOf(headers: MsgHdrs | undefined): number {
  return Math.max(1, Number(headers?.get(Header.count) || 1));
}

/**
 * The entries of a bundle's payload, each with headers as it would have had alone
 * (`of-type`, `of-id`, `of-key`, trace context). Throws DecodeError for bad bytes.
 */
function unbundle(payload: Uint8Array): ReceivedEntry[] {
  let bundle;
  try {
    bundle = fromBinary(BundleSchema, payload);
  } catch (err) {
    throw new DecodeError(`cannot decode ${BUNDLE_TYPE}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return bundle.entries.map((e) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(e.headers)) h.set(k, v);
    h.set(Header.type, e.type);
    h.set(Header.id, e.id);
    if (e.key) h.set(Header.key, e.key);
    return { id: e.id, key: e.key, type: e.type, payload: e.payload, headers: h };
  });
}

/**
 * The bus messages a JetStream message carries: its bundle's entries, or itself (its id as
 * `messageIdOf` gives it, from the stream and sequence it was read at). Throws DecodeError
 * for a bad bundle.
 */
export function receivedEntries(headers: MsgHdrs | undefined, payload: Uint8Array, at: { stream: string; seq: number } = { stream: "", seq: 0 }): ReceivedEntry[] {
  const type = headers?.get(Header.type) ?? "";
  if (type === BUNDLE_TYPE) return unbundle(payload);
  return [{ id: messageIdOf(headers, at.stream, at.seq), key: headers?.get(Header.key) ?? "", type, payload, headers }];
}

/**
 * Publishes messages (each with its `id`) bundled per subject, pipelined: every publish is
 * sent, then every ack awaited. For what a batch emits at once (a participant's replies).
 */
export async function publishBundled(publisher: StreamPublisher, messages: readonly OutgoingMessage[], max = DEFAULT_BUNDLE_MAX, registry: Registry = sagaRegistry): Promise<void> {
  await publishWire(publisher, wireMessages(messages, max, registry));
}

/** The JetStream messages that carry `messages`, bundled per subject. Throws for one that cannot be encoded (an unregistered type, no id). */
export function wireMessages(messages: readonly OutgoingMessage[], max = DEFAULT_BUNDLE_MAX, registry: Registry = sagaRegistry): WireMessage[] {
  return bundleForWire(messages.map((m) => encodeOutgoing(m, registry)), max);
}

/** What became of one wire message: JetStream's acknowledgement, or the error that stopped it. */
export type WireOutcome = { ack: PubAck; error?: undefined } | { ack?: undefined; error: unknown };

/**
 * Publishes encoded messages, pipelined: every publish is sent, then every ack awaited; rejects
 * with the first failure. `settled` hears of each message's own outcome as soon as it is known.
 */
export async function publishWire(publisher: StreamPublisher, wire: readonly WireMessage[], settled?: (w: WireMessage, outcome: WireOutcome) => void): Promise<void> {
  await Promise.all(
    wire.map(async (w) => {
      let ack: PubAck;
      try {
        ack = await publisher.publish(w.subject, w.payload, { msgID: w.msgID, headers: w.headers });
      } catch (error) {
        settled?.(w, { error });
        throw error;
      }
      settled?.(w, { ack });
    }),
  );
}
