import { context, propagation, SpanKind, SpanStatusCode, trace, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import type { DescMethod } from "@bufbuild/protobuf";
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
    try {
      return await context.with(trace.setSpan(parent, span), () => next(req));
    } catch (error) {
      const code = ConnectError.from(error).code;
      span.setAttribute("rpc.grpc.status_code", code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
      throw error;
    } finally {
      span.end();
    }
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

export function codeName(code: Code | undefined): string {
  return code === undefined ? "ok" : Code[code].replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
}

/** Counts calls by method and status code and records their latency. */
export function serverMetrics(): Interceptor {
  return (next) => async (req) => {
    const labels = methodLabels(req.method);
    const started = performance.now();
    try {
      const res = await next(req);
      requests.inc(labels.withCode("ok"));
      return res;
    } catch (error) {
      requests.inc(labels.withCode(codeName(ConnectError.from(error).code)));
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
    try {
      return await next(req);
    } catch (error) {
      const method = methodLabels(req.method).name;
      if (error instanceof ConnectError) {
        if (error.code === Code.Internal || error.code === Code.Unknown) logger.error("rpc failed", { method, error: error.message, stack: error.stack });
        throw error;
      }
      logger.error("rpc failed", { method, error: errorMessage(error), stack: error instanceof Error ? error.stack : undefined });
      // Postgres going away (a restart, a failover) or a dependency not answering: retryable.
      const unavailable = isConnectionError(error) || /ECONNREFUSED|ECONNRESET|timeout|Connection terminated/i.test(errorMessage(error));
      throw new ConnectError(unavailable ? "a dependency is unavailable, retry later" : "internal error", unavailable ? Code.Unavailable : Code.Internal);
    }
  };
}
