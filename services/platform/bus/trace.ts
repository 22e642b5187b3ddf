import { context, propagation, type Context, type TextMapGetter } from "@opentelemetry/api";
import type { MsgHdrs } from "@nats-io/transport-node";

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
