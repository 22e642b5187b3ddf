import { context, propagation, ROOT_CONTEXT, type Context, type SpanContext, SpanKind, SpanStatusCode, type TextMapGetter, trace } from "@opentelemetry/api";
import type { MsgHdrs } from "@nats-io/transport-node";
import { errorMessage } from "../errors.js";
import { setRecordedAttributes } from "../span-attributes.js";

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
export function extractTraceContext(headers: MsgHdrs | undefined): Context {
  return propagation.extract(context.active(), headers, natsGetter);
}

const tracer = trace.getTracer("orderflow-bus");

/**
 * Runs `work`, done once for several messages, in a span of its own: the child of the one
 * message's span when it handles one, so its statements show in that message's trace; with
 * more, a new trace whose span links each message's (OpenTelemetry's way for a batch).
 */
export function inBatchSpan<T>(name: string, messages: readonly (SpanContext | undefined)[], work: () => Promise<T>): Promise<T> {
  const known = messages.filter((m): m is SpanContext => m !== undefined);
  const parent = known.length === 1 ? trace.setSpanContext(ROOT_CONTEXT, known[0]!) : ROOT_CONTEXT;
  const links = known.length > 1 ? known.map((spanContext) => ({ context: spanContext })) : [];
  return tracer.startActiveSpan(name, { kind: SpanKind.INTERNAL, links }, parent, async (span) => {
    setRecordedAttributes(span, () => ({ "messaging.batch.message_count": messages.length }));
    try {
      return await work();
    } catch (error) {
      span.recordException(error instanceof Error ? error : new Error(String(error)));
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** The span of the message being handled, to hand to `inBatchSpan` later. */
export function currentSpanContext(): SpanContext | undefined {
  return trace.getActiveSpan()?.spanContext();
}
