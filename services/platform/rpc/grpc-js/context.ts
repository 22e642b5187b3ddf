import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import type { ServerSurfaceCall } from "@grpc/grpc-js/build/src/server-call.js";
import { writesKnownEncoding } from "../known-encoding.js";
import { MetadataHeaders } from "./metadata-headers.js";
import { grpcJsCall } from "./unary.js";

/** A call's HandlerContext, and what its transport keeps of it: `abort` fires its signal once the call is over. */
export interface CallContext extends HandlerContext {
  abort(reason: unknown): void;
  /** Whether the response headers have gone out (they go once, before the first message or the status). */
  headerSent: boolean;
}

/**
 * The HandlerContext of a grpc-js call, with what connect-node gives a gRPC call: request
 * metadata as headers (a view of it), the deadline (grpc-timeout) as timeoutMs, and a signal that fires
 * when the client cancels, the deadline passes or the call ends. Responses with a known
 * encoding are written as they are (see known-encoding.ts).
 *
 * Built here rather than with connect's createHandlerContext, which links three abort
 * controllers (its own deadline timer among them) and copies every header set once more:
 * grpc-js already keeps the deadline and reports it as a cancellation, so one controller does.
 * That one is made when something first asks for the signal: most calls (a cached GetOrder)
 * never do, and a controller aborted at the end of every call costs an event dispatch.
 */
export function callContext(method: DescMethod, call: ServerSurfaceCall & { getPath(): string }): CallContext {
  return new GrpcJsCallContext(method, call);
}

const noDeadline = (): undefined => undefined;

/**
 * A class, not a literal: a getter in an object literal is defined at run time on every
 * object made, which costs more than the abort it spares. Connect copies a context's own
 * properties for streaming calls (and puts the signal in explicitly), so everything but
 * the signal is an own property.
 */
class GrpcJsCallContext implements CallContext {
  readonly service: DescService;
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly url: string;
  readonly timeoutMs: () => number | undefined;
  readonly requestHeader: Headers;
  readonly responseHeader = new Headers();
  readonly responseTrailer = new Headers();
  readonly values = createContextValues().set(writesKnownEncoding, true);
  headerSent = false;
  private readonly deadline: number;
  private controller: AbortController | undefined;
  private endedWith: unknown;

  constructor(
    readonly method: DescMethod,
    private readonly call: ServerSurfaceCall & { getPath(): string },
  ) {
    this.service = method.parent;
    this.url = `http://${call.getHost()}${call.getPath()}`;
    const deadline = call.getDeadline();
    const at = (this.deadline = deadline instanceof Date ? deadline.getTime() : deadline);
    this.timeoutMs = Number.isFinite(at) ? () => at - Date.now() : noDeadline;
    this.requestHeader = new MetadataHeaders(call.metadata);
    this.values.set(grpcJsCall, this);
  }

  get signal(): AbortSignal {
    if (this.controller) return this.controller.signal;
    const controller = (this.controller = new AbortController());
    if (this.endedWith !== undefined) controller.abort(this.endedWith);
    else if (this.call.cancelled) controller.abort(this.cancellation());
    // grpc-js emits "cancelled" when the client resets the stream or the deadline passes,
    // and also after every status it sends: by then the call has ended and the signal fired.
    else (this.call as unknown as NodeJS.EventEmitter).once("cancelled", () => controller.signal.aborted || controller.abort(this.cancellation()));
    return controller.signal;
  }

  abort(reason: unknown): void {
    if (!this.controller) this.endedWith ??= reason;
    else if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  private cancellation(): ConnectError {
    return Date.now() >= this.deadline ? new ConnectError("the operation timed out", Code.DeadlineExceeded) : new ConnectError("the client cancelled the call", Code.Canceled);
  }
}
