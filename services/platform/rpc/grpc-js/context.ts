import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, createHandlerContext } from "@connectrpc/connect";
import type { ServerSurfaceCall } from "@grpc/grpc-js/build/src/server-call.js";
import { writesKnownEncoding } from "../known-encoding.js";
import { headersFromMetadata } from "./metadata.js";

export type CallContext = ReturnType<typeof createHandlerContext>;

/**
 * The HandlerContext of a grpc-js call, as connect-node builds it for the gRPC
 * protocol: request metadata as headers, the deadline (grpc-timeout) as
 * timeoutMs and in the signal, and a signal that also fires when the client
 * cancels or the call ends. Responses with a known encoding are written as they are
 * (see known-encoding.ts).
 */
export function callContext(method: DescMethod, call: ServerSurfaceCall & { getPath(): string }): CallContext {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  const timeoutMs = Number.isFinite(at) ? Math.max(at - Date.now(), 0) : undefined;
  const cancelled = new AbortController();
  const context = createHandlerContext({
    service: method.parent,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `http://${call.getHost()}${call.getPath()}`,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    requestSignal: cancelled.signal,
    requestHeader: headersFromMetadata(call.metadata),
    contextValues: createContextValues().set(writesKnownEncoding, true),
  });
  // grpc-js emits "cancelled" when the client resets the stream or the deadline passes,
  // and also after every status it sends: by then the call has ended and the signal fired.
  (call as unknown as NodeJS.EventEmitter).once("cancelled", () => {
    if (context.signal.aborted) return;
    cancelled.abort(Date.now() >= at ? new ConnectError("the operation timed out", Code.DeadlineExceeded) : new ConnectError("the client cancelled the call", Code.Canceled));
  });
  return context;
}
