import { context, propagation, type Span, SpanKind, SpanStatusCode, trace, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { isConnectionError } from "../pgerrors.js";
import { deferredCounter, histogram, labelSets, latencyBuckets } from "../metrics.js";
import { setRecordedAttributes } from "../span-attributes.js";

const headerGetter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};
const headerSetter: TextMapSetter<Headers> = { set: (carrier, key, value) => carrier.set(key, value) };

const tracer = trace.getTracer("orderflow-rpc");

/**
 * A server stream's messages, with `ended` told how the stream ended (undefined: it completed
 * or the caller went away) and its error thrown as `mapError` makes it. A handler's generator
 * runs only as the stream is read, after the interceptors' `next` has returned: without this,
 * its errors would pass them by.
 */
async function* observedStream<T>(messages: AsyncIterable<T>, ended: (error: unknown) => void, mapError: (error: unknown) => unknown = (error) => error): AsyncGenerator<T> {
  let failure: unknown;
  try {
    yield* messages;
  } catch (error) {
    failure = mapError(error);
    throw failure;
  } finally {
    ended(failure);
  }
}

function recordError(span: Span, error: unknown): void {
  span.setAttribute("rpc.grpc.status_code", ConnectError.from(error).code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
}

/** A method's name and metric label sets, made once per method (and status code) rather than on every call. */
class MethodLabels {
  readonly method: Readonly<{ method: string }>;
  readonly withCode = labelSets((code: string) => ({ method: this.name, code }));

  constructor(readonly name: string) {
    this.method = Object.freeze({ method: name });
  }
}

const labelsOfMethod = new WeakMap<DescMethod, MethodLabels>();

function methodLabels(method: DescMethod): MethodLabels {
  let labels = labelsOfMethod.get(method);
  if (!labels) labelsOfMethod.set(method, (labels = new MethodLabels(`${method.parent.typeName}/${method.name}`)));
  return labels;
}

/** Continues the caller's trace (traceparent header) in a SERVER span per call. */
export function serverTracing(): Interceptor {
  return (next) => async (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    const span = tracer.startSpan(methodLabels(req.method).name, { kind: SpanKind.SERVER }, parent);
    setRecordedAttributes(span, () => ({ "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name }));
    let res;
    try {
      res = await context.with(trace.setSpan(parent, span), () => next(req));
    } catch (error) {
      recordError(span, error);
      span.end();
      throw error;
    }
    if (!res.stream) {
      span.end();
      return res;
    }
    // A stream's span lasts as long as the stream.
    return {
      ...res,
      message: observedStream(res.message, (error) => {
        if (error !== undefined) recordError(span, error);
        span.end();
      }),
    };
  };
}

/** Sends the current trace context with outgoing calls. */
export function clientTracing(): Interceptor {
  return (next) => (req) => {
    propagation.inject(context.active(), req.header, headerSetter);
    return next(req);
  };
}

const requests = deferredCounter("rpc_server_requests_total", "RPCs handled, by method and status code", ["method", "code"]);
const duration = histogram("rpc_server_duration_seconds", "RPC handling time until the response (or stream) starts", ["method"], latencyBuckets);

function countCall(labels: MethodLabels, error: unknown): void {
  requests.inc(labels.withCode(error === undefined ? "ok" : codeName(ConnectError.from(error).code)));
}

export function codeName(code: Code | undefined): string {
  return code === undefined ? "ok" : Code[code].replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
}

/** "ok" and every gRPC status code's name, as the RPC counter labels them. */
const codeNames: readonly string[] = ["ok", ...Object.values(Code).filter((code): code is Code => typeof code === "number").map(codeName)];

/**
 * Counts calls by method and status code and records their latency. Every method of `served`
 * is exported at 0 from the start, with every code, as grpc-prometheus does: Prometheus's
 * rate() and increase() count an increment only from a sample before it, so a method's first
 * error of a kind would otherwise go unseen.
 */
export function serverMetrics(served: readonly DescService[] = []): Interceptor {
  for (const method of served.flatMap((service) => service.methods)) {
    const labels = methodLabels(method);
    for (const code of codeNames) requests.inc(labels.withCode(code), 0);
    duration.zero(labels.method);
  }
  return (next) => async (req) => {
    const labels = methodLabels(req.method);
    const started = performance.now();
    try {
      const res = await next(req);
      if (!res.stream) {
        countCall(labels, undefined);
        return res;
      }
      // A stream is counted by how it ends.
      return { ...res, message: observedStream(res.message, (error) => countCall(labels, error)) };
    } catch (error) {
      countCall(labels, error);
      throw error;
    } finally {
      duration.observe(labels.method, (performance.now() - started) / 1_000);
    }
  };
}

/**
 * Logs failures. Errors that are not ConnectErrors are bugs or infrastructure
 * faults: the caller gets INTERNAL (or UNAVAILABLE for connection failures)
 * without internals, the log gets the stack.
 */
export function serverErrors(logger: Logger): Interceptor {
  return (next) => async (req) => {
    let res;
    try {
      res = await next(req);
    } catch (error) {
      throw forCaller(logger, req.method, error);
    }
    return res.stream ? { ...res, message: observedStream(res.message, () => undefined, (error) => forCaller(logger, req.method, error)) } : res;
  };
}

/** What the caller is told of a failure, logged when it is a fault. */
function forCaller(logger: Logger, desc: DescMethod, error: unknown): ConnectError {
  const method = methodLabels(desc).name;
  if (error instanceof ConnectError) {
    if (error.code === Code.Internal || error.code === Code.Unknown) logger.error("rpc failed", { method, error: error.message, stack: error.stack });
    return error;
  }
  logger.error("rpc failed", { method, error: errorMessage(error), stack: error instanceof Error ? error.stack : undefined });
  // Postgres going away (a restart, a failover) or a dependency not answering: retryable.
  const unavailable = isConnectionError(error) || /ECONNREFUSED|ECONNRESET|timeout|Connection terminated/i.test(errorMessage(error));
  return new ConnectError(unavailable ? "a dependency is unavailable, retry later" : "internal error", unavailable ? Code.Unavailable : Code.Internal);
}
