import { context, propagation, ROOT_CONTEXT, type Context, type Span, type SpanContext, SpanKind, SpanStatusCode, type TextMapGetter, trace } from "@opentelemetry/api";
import type { MsgHdrs } from "@nats-io/transport-node";
import { asError, errorMessage } from "../errors.js";
import { setRecordedAttributes } from "../span-attributes.js";
import { spansRecord } from "../span-recording.js";

/** The current trace context (`traceparent`, `tracestate`) as plain headers. Empty without a registered propagator. */
export function currentTraceHeaders(ctx: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

const natsGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => carrier?.keys() ?? [],
  // MsgHdrs.get returns "" for a missing header; the propagator wants undefined.
  get: (carrier, key) => {
    const value = carrier?.get(key) ?? "";
    return value === "" ? undefined : value;
  },
};

/** The trace context carried by a NATS message's headers (the active context when there is none). */
function extractTraceContext(headers: MsgHdrs | undefined): Context {
  return propagation.extract(context.active(), headers, natsGetter);
}

const tracer = trace.getTracer("orderflow-bus");

/**
 * Runs `work`, done once for several messages, in a span of its own: the child of the one
 * message's span when it handles one, so its statements show in that message's trace; with
 * more, a new trace whose span links each message's (OpenTelemetry's way for a batch).
 */
export function inBatchSpan<T>(name: string, messages: readonly (SpanContext | undefined)[], work: () => Promise<T>): Promise<T> {
  if (!spansRecord()) return work();
  const known = messages.filter((m): m is SpanContext => m !== undefined);
  const parent = known.length === 1 ? trace.setSpanContext(ROOT_CONTEXT, known[0]!) : ROOT_CONTEXT;
  const links = known.length > 1 ? known.map((spanContext) => ({ context: spanContext })) : [];
  return tracer.startActiveSpan(name, { kind: SpanKind.INTERNAL, links }, parent, (span) => {
    setRecordedAttributes(span, () => ({ "messaging.batch.message_count": messages.length }));
    return endedAfter(span, work);
  });
}

/** Runs a consumer's handling of a message in a CONSUMER span, the child of the context its headers carry. */
export function inConsumerSpan<T>(message: { subject: string; id: string; headers: MsgHdrs | undefined }, consumer: string, handle: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(`${message.subject} process`, { kind: SpanKind.CONSUMER }, extractTraceContext(message.headers), (span) => {
    setRecordedAttributes(span, () => ({ "messaging.system": "nats", "messaging.destination.name": message.subject, "messaging.message.id": message.id, "messaging.consumer.group.name": consumer }));
    return endedAfter(span, handle);
  });
}

/** Runs `work` as `span`'s: an error marks the span failed and passes on; the span ends either way. */
async function endedAfter<T>(span: Span, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    span.recordException(asError(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
    throw error;
  } finally {
    span.end();
  }
}

/** The span of the message being handled, to hand to `inBatchSpan` later. */
export function currentSpanContext(): SpanContext | undefined {
  return trace.getActiveSpan()?.spanContext();
}

/** Messages about to be published, each in a PRODUCER span of its own (see `producerSpans`). */
export interface Producing<M> {
  /** The messages, each carrying its producer span's context where that span records. */
  messages: M[];
  /**
   * Ends the spans once JetStream has acknowledged the messages (or with the error that
   * stopped them): those at `positions` in `messages`, or all.
   */
  end(error?: unknown, positions?: readonly number[]): void;
}

/**
 * Starts a PRODUCER span per message, the child of the context its headers carry (the
 * writer's, kept through the outbox), and hands that span on in the message's headers, so a
 * trace shows when each message left and how long it waited before. A message whose span
 * would not record (no exporter, or an unsampled trace) is left as it was.
 */
export function producerSpans<M extends { subject: string; headers?: Record<string, string> | undefined }>(messages: readonly M[]): Producing<M> {
  // Without an exporter a producer span would only cost (~2 µs a message): none is made.
  if (!spansRecord()) return { messages: [...messages], end: () => undefined };
  /** By the message's position; none where its span would not record. */
  const spans: Array<Span | undefined> = [];
  const out = messages.map((message) => {
    const parent = propagation.extract(ROOT_CONTEXT, message.headers ?? {});
    const span = tracer.startSpan(`${message.subject} publish`, { kind: SpanKind.PRODUCER }, parent);
    if (!span.isRecording()) {
      span.end();
      spans.push(undefined);
      return message;
    }
    span.setAttributes({ "messaging.system": "nats", "messaging.destination.name": message.subject, "messaging.operation.type": "send" });
    spans.push(span);
    return { ...message, headers: { ...message.headers, ...currentTraceHeaders(trace.setSpan(parent, span)) } };
  });
  const endSpan = (span: Span | undefined, error: unknown): void => {
    if (!span) return;
    if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
    span.end();
  };
  return {
    messages: out,
    end: (error, positions) => {
      if (positions === undefined) for (const span of spans) endSpan(span, error);
      else for (const position of positions) endSpan(spans[position], error);
    },
  };
}
