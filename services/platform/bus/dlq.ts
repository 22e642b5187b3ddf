import type { JetStreamClient, JetStreamManager, JsMsg, StoredMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { DEFAULT_DLQ, DlqHeader, Header, type DlqConfig } from "./names.js";
import { headersToRecord } from "./publish.js";

/** A message in the dead-letter stream. */
export interface DeadLetter {
  /** Sequence in the DLQ stream: the id `dlq list` shows and `dlq replay` takes. */
  seq: number;
  /** Where it was published originally (replays go there). */
  subject: string;
  /** Protobuf type name (`of-type`), "" if it had none. */
  type: string;
  /** Logical message id (inbox key) of the original. */
  messageId: string;
  /** Original stream and sequence. */
  stream: string;
  streamSeq: number;
  deliveries: number;
  error: string;
  consumer: string;
  /** When it was dead-lettered (ISO 8601). */
  time: string;
  /** The original headers. */
  headers: Record<string, string[]>;
  /** The original payload. */
  data: Uint8Array;
}

/** Single-line, bounded text for a header value. */
function headerText(s: string, max = 2000): string {
  const flat = s.replace(/[\r\n]+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/** Logical id of a stream message: `of-id`, else Nats-Msg-Id, else `<stream>:<seq>`. */
export function messageIdOf(h: { get(k: string): string } | undefined, stream: string, seq: number): string {
  return h?.get(Header.id) || h?.get(Header.msgId) || `${stream}:${seq}`;
}

/** A consumed message, or one entry of a consumed bundle, as the DLQ records it. */
export interface Undeliverable {
  subject: string;
  stream: string;
  streamSeq: number;
  deliveries: number;
  /** Logical message id (inbox key). */
  id: string;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
}

/** A consumed JetStream message as the DLQ records it. */
export function undeliverable(m: JsMsg): Undeliverable {
  return { subject: m.subject, stream: m.info.stream, streamSeq: m.seq, deliveries: m.info.deliveryCount, id: messageIdOf(m.headers, m.info.stream, m.seq), headers: m.headers, data: m.data };
}

/**
 * Publishes a consumed message to the DLQ (`<prefix>.<original subject>`), with its payload
 * unchanged and its original subject, headers, delivery count, error, consumer and time in
 * headers. msgID `dlq:<consumer>:<stream>:<seq>` makes a repeated dead-lettering harmless
 * (and keeps two consumers that both fail one message from shadowing each other).
 */
export async function publishDeadLetter(js: JetStreamClient, m: JsMsg, error: string, consumer: string, dlq: DlqConfig = DEFAULT_DLQ): Promise<void> {
  await publishUndeliverable(js, undeliverable(m), error, consumer, dlq, `dlq:${consumer}:${m.info.stream}:${m.seq}`);
}

/**
 * Publishes one entry of a consumed bundle to the DLQ, as `publishDeadLetter` a message:
 * the entry alone, with its own headers, so it is listed and replayed as a message of its own.
 */
export async function publishDeadEntry(js: JetStreamClient, entry: Undeliverable, error: string, consumer: string, dlq: DlqConfig = DEFAULT_DLQ): Promise<void> {
  await publishUndeliverable(js, entry, error, consumer, dlq, `dlq:${consumer}:${entry.stream}:${entry.streamSeq}:${entry.id}`);
}

async function publishUndeliverable(js: JetStreamClient, u: Undeliverable, error: string, consumer: string, dlq: DlqConfig, msgID: string): Promise<void> {
  const h = natsHeaders();
  const type = u.headers?.get(Header.type) ?? "";
  if (type) h.set(Header.type, type);
  h.set(Header.id, u.id);
  h.set(DlqHeader.subject, u.subject);
  h.set(DlqHeader.stream, u.stream);
  h.set(DlqHeader.streamSeq, String(u.streamSeq));
  h.set(DlqHeader.deliveries, String(u.deliveries));
  h.set(DlqHeader.error, headerText(error) || "unknown error");
  h.set(DlqHeader.consumer, consumer);
  h.set(DlqHeader.time, new Date().toISOString());
  h.set(DlqHeader.headers, JSON.stringify(headersToRecord(u.headers)));
  await js.publish(`${dlq.subjectPrefix}.${u.subject}`, u.data, { msgID, headers: h });
}

function parseDeadLetter(sm: StoredMsg): DeadLetter {
  const h = sm.header;
  let headers: Record<string, string[]> = {};
  try {
    const parsed: unknown = JSON.parse(h.get(DlqHeader.headers) || "{}");
    if (parsed && typeof parsed === "object") headers = parsed as Record<string, string[]>;
  } catch {
    headers = {};
  }
  const stream = h.get(DlqHeader.stream);
  const streamSeq = Number(h.get(DlqHeader.streamSeq) || 0);
  return {
    seq: sm.seq,
    subject: h.get(DlqHeader.subject),
    type: h.get(Header.type),
    messageId: h.get(Header.id) || `${stream}:${streamSeq}`,
    stream,
    streamSeq,
    deliveries: Number(h.get(DlqHeader.deliveries) || 0),
    error: h.get(DlqHeader.error),
    consumer: h.get(DlqHeader.consumer),
    time: h.get(DlqHeader.time) || sm.time.toISOString(),
    headers,
    data: sm.data,
  };
}

/** Reads one dead letter by DLQ sequence (null if there is none). */
export async function getDeadLetter(jsm: JetStreamManager, seq: number, dlq: DlqConfig = DEFAULT_DLQ): Promise<DeadLetter | null> {
  const sm = await jsm.streams.getMessage(dlq.stream, { seq });
  return sm ? parseDeadLetter(sm) : null;
}

/** Lists dead letters, oldest first (up to `limit`, default 1000). */
export async function listDeadLetters(jsm: JetStreamManager, opts: { dlq?: DlqConfig; limit?: number } = {}): Promise<DeadLetter[]> {
  const dlq = opts.dlq ?? DEFAULT_DLQ;
  const limit = opts.limit ?? 1000;
  const { state } = await jsm.streams.info(dlq.stream);
  const out: DeadLetter[] = [];
  if (state.messages === 0) return out;
  for (let seq = state.first_seq; seq <= state.last_seq && out.length < Math.min(limit, state.messages); seq++) {
    const sm = await jsm.streams.getMessage(dlq.stream, { seq });
    if (sm) out.push(parseDeadLetter(sm));
  }
  return out;
}

/**
 * Re-drives a dead letter: publishes its payload to the original subject with the original
 * headers, msgID `<original id>:replay:<dlq seq>` (so JetStream's de-duplication does not
 * drop it) and `of-id` = the original id, then deletes it from the DLQ.
 *
 * Inbox consumers key on `of-id`: the original never committed (that is why it was
 * dead-lettered), so the replay is processed — once; replaying the same message again,
 * or a consumer that had already processed it (several consumers on one subject), finds
 * the id in its inbox and does nothing.
 */
export async function replayDeadLetter(js: JetStreamClient, jsm: JetStreamManager, seq: number, dlq: DlqConfig = DEFAULT_DLQ): Promise<DeadLetter> {
  const dl = await getDeadLetter(jsm, seq, dlq);
  if (!dl) throw new Error(`no dead letter with sequence ${seq} in ${dlq.stream}`);
  if (!dl.subject) throw new Error(`dead letter ${seq} has no ${DlqHeader.subject} header`);
  const h = natsHeaders();
  for (const [k, values] of Object.entries(dl.headers)) {
    if (k === Header.msgId) continue;
    for (const v of values) h.append(k, v);
  }
  h.set(Header.id, dl.messageId);
  h.set(Header.replayOf, String(seq));
  await js.publish(dl.subject, dl.data, { msgID: `${dl.messageId}:replay:${seq}`, headers: h });
  await jsm.streams.deleteMessage(dlq.stream, seq, false);
  return dl;
}

/**
 * Replays every dead letter present when called (oldest first); letters that fail again
 * while this runs are left for the next call. Returns those replayed.
 */
export async function replayAllDeadLetters(js: JetStreamClient, jsm: JetStreamManager, dlq: DlqConfig = DEFAULT_DLQ): Promise<DeadLetter[]> {
  const { state } = await jsm.streams.info(dlq.stream);
  const replayed: DeadLetter[] = [];
  for (;;) {
    const batch = (await listDeadLetters(jsm, { dlq, limit: 500 })).filter((dl) => dl.seq <= state.last_seq);
    if (batch.length === 0) return replayed;
    for (const dl of batch) replayed.push(await replayDeadLetter(js, jsm, dl.seq, dlq));
  }
}
