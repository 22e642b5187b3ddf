import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import type { ServerSurfaceCall } from "@grpc/grpc-js/build/src/server-call.js";
import { writesKnownEncoding } from "../known-encoding.js";
import { MetadataHeaders } from "./metadata-headers.js";

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
 */
export function callContext(method: DescMethod, call: ServerSurfaceCall & { getPath(): string }): CallContext {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  const controller = new AbortController();
  // grpc-js emits "cancelled" when the client resets the stream or the deadline passes,
  // and also after every status it sends: by then the call has ended and the signal fired.
  (call as unknown as NodeJS.EventEmitter).once("cancelled", () => {
    if (controller.signal.aborted) return;
    controller.abort(Date.now() >= at ? new ConnectError("the operation timed out", Code.DeadlineExceeded) : new ConnectError("the client cancelled the call", Code.Canceled));
  });
  return {
    service: method.parent,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `http://${call.getHost()}${call.getPath()}`,
    timeoutMs: Number.isFinite(at) ? () => at - Date.now() : () => undefined,
    signal: controller.signal,
    requestHeader: new MetadataHeaders(call.metadata),
    responseHeader: new Headers(),
    responseTrailer: new Headers(),
    values: createContextValues().set(writesKnownEncoding, true),
    headerSent: false,
    abort(reason) {
      if (!controller.signal.aborted) controller.abort(reason);
    },
  };
}
