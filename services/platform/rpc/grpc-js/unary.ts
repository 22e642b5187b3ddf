import { create, type DescMessage, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { type ContextValues, createContextKey, type HandlerContext, type Interceptor, type MethodImplSpec, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import type { CallContext } from "./context.js";

/** The call a request belongs to, for the end of the chain: interceptors pass a request's context values on. */
export const grpcJsCall = createContextKey<CallContext | undefined>(undefined, { description: "the grpc-js call" });

type UnaryMethodSpec = Extract<MethodImplSpec, { kind: "unary" }>;
type Next = Parameters<Interceptor>[0];

/**
 * Runs a unary method's implementation through the interceptors as connect's
 * `invokeUnaryImplementation` does, with the chain built once per method rather than on
 * every call: connect's applies every interceptor again per call and copies the request
 * and the context twice over (1.5 µs of a cached GetOrder's 42, docs/performance-history.md,
 * thirty-third pass). The call's context goes in the request's context values (`grpcJsCall`).
 */
export function unaryInvoker(spec: UnaryMethodSpec, interceptors: readonly Interceptor[]): (context: CallContext, input: Message) => Promise<Message> {
  const { method } = spec;
  const output: DescMessage = method.output;
  const implementation: Next = async (req) => {
    if (req.stream) throw new Error("an interceptor turned a unary call into a stream");
    const call = req.contextValues.get(grpcJsCall);
    if (!call) throw new Error("an interceptor replaced the request's context values without the call's");
    const message = create(output, await spec.impl(req.message, handlerContext(call, req)));
    return { stream: false, method, service: method.parent, message, header: call.responseHeader, trailer: call.responseTrailer };
  };
  const chain = interceptors.reduceRight<Next>((next, interceptor) => interceptor(next), implementation);
  return async (context, input) => {
    const res = await chain(new UnaryCallRequest(method, input, context));
    if (res.stream) throw new Error("an interceptor answered a unary call with a stream");
    copyHeaders(res.header, context.responseHeader);
    copyHeaders(res.trailer, context.responseTrailer);
    return res.message;
  };
}

/**
 * The context the implementation sees: the call's own for the request the invoker made (its
 * fields are the call's), else one merged from the request an interceptor passed on instead.
 */
function handlerContext(call: CallContext, req: UnaryRequest | StreamRequest): HandlerContext {
  if (req instanceof UnaryCallRequest) return call;
  // A copy of the request made with spread syntax has no signal (see UnaryCallRequest): the call's is meant.
  return { ...call, service: req.service, requestHeader: req.header, signal: (req.signal as AbortSignal | undefined) ?? call.signal, values: req.contextValues };
}

/** A unary request whose signal is made only if something asks for it (see callContext). */
class UnaryCallRequest implements UnaryRequest {
  readonly stream = false;
  readonly service: DescService;
  readonly requestMethod: string;
  readonly url: string;
  readonly header: Headers;
  readonly contextValues: ContextValues;

  constructor(
    readonly method: DescMethod & { methodKind: "unary" },
    readonly message: Message,
    private readonly context: CallContext,
  ) {
    this.service = method.parent;
    this.requestMethod = context.requestMethod;
    this.url = context.url;
    this.header = context.requestHeader;
    this.contextValues = context.values;
  }

  get signal(): AbortSignal {
    return this.context.signal;
  }
}

/** An interceptor may answer other headers than the call's: they replace the call's. */
function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const key of [...to.keys()]) to.delete(key);
  from.forEach((value, key) => to.set(key, value));
}
