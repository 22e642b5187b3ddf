import type { DescMessage, DescMethod, Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor, type MethodImplSpec } from "@connectrpc/connect";
import { createAsyncIterable, createMethodSerializationLookup, transformInvokeImplementation, validateUniversalHandlerOptions } from "@connectrpc/connect/protocol";
import type { Metadata, ServerDuplexStream, ServerReadableStream, ServerUnaryCall, ServerWritableStream, sendUnaryData, UntypedHandleCall } from "@grpc/grpc-js";
import { callContext, type CallContext } from "./context.js";
import { knownEncoding } from "../known-encoding.js";
import { metadataFromHeaders } from "./metadata.js";
import { errorStatus } from "./status.js";
import { unaryInvoker } from "./unary.js";

type Bytes = Buffer;
type Call = ServerUnaryCall<Bytes, Bytes> | ServerReadableStream<Bytes, Bytes> | ServerWritableStream<Bytes, Bytes> | ServerDuplexStream<Bytes, Bytes>;
type Writable = ServerWritableStream<Bytes, Bytes> | ServerDuplexStream<Bytes, Bytes>;

/** Counts a call in flight; the returned function marks it finished. */
export type TrackCall = () => () => void;

const defaults = validateUniversalHandlerOptions({});

/**
 * The reason the context's signal carries once a call has ended, as connect-node
 * aborts it then; one shared error, since a fresh AbortError per call costs a stack trace.
 */
const callEnded = new ConnectError("the call has ended", Code.Canceled);

/**
 * A grpc-js handler that runs the connect implementation of one method through
 * connect's own invocation code (for unary calls, its equivalent in unary.ts) — the
 * same interceptor chain, request parsing and error encoding as connect-node — with
 * grpc-js doing the HTTP/2 framing.
 * grpc-js passes the raw message bytes (identity (de)serializers): parse errors
 * are connect's, not grpc-js's.
 */
export function grpcJsHandler(spec: MethodImplSpec, interceptors: Interceptor[], track: TrackCall): UntypedHandleCall {
  const serialization = createMethodSerializationLookup(spec.method as DescMethod & { input: DescMessage; output: DescMessage }, defaults.binaryOptions, defaults.jsonOptions, defaults);
  const input = serialization.getI(true);
  const output = serialization.getO(true);
  const serialize = (message: unknown) => asBuffer(knownEncoding(message) ?? output.serialize(message as never));
  const parse = (bytes: Bytes): Message => input.parse(bytes);

  const run = async (call: Call, body: () => AsyncIterable<Message>, send: (context: CallContext, messages: AsyncIterable<unknown>) => Promise<void>, fail: (context: CallContext, error: unknown) => void) => {
    const done = track();
    const context = callContext(spec.method, call);
    try {
      await send(context, transformInvokeImplementation(spec, context, interceptors)(body()));
    } catch (error) {
      fail(context, error);
    } finally {
      context.abort(callEnded);
      done();
    }
  };

  switch (spec.kind) {
    case "unary": {
      const invoke = unaryInvoker(spec, interceptors);
      return (async (call: ServerUnaryCall<Bytes, Bytes>, callback: sendUnaryData<Bytes>) => {
        const done = track();
        const context = callContext(spec.method, call);
        try {
          const message = await invoke(context, parse(call.request));
          sendHeader(call, context);
          callback(null, serialize(message), metadataFromHeaders(context.responseTrailer));
        } catch (error) {
          sendHeader(call, context);
          callback(errorStatus(error, context.responseTrailer));
        } finally {
          context.abort(callEnded);
          done();
        }
      }) as UntypedHandleCall;
    }
    case "server_streaming":
      return ((call: ServerWritableStream<Bytes, Bytes>) =>
        void run(call, () => createAsyncIterable([parse(call.request)]), (context, messages) => writeAll(call, context, messages, serialize), (context, error) => failStream(call, context, error))) as UntypedHandleCall;
    case "bidi_streaming":
      return ((call: ServerDuplexStream<Bytes, Bytes>) =>
        void run(call, () => parseAll(call, parse), (context, messages) => writeAll(call, context, messages, serialize), (context, error) => failStream(call, context, error))) as UntypedHandleCall;
    case "client_streaming":
      return ((call: ServerReadableStream<Bytes, Bytes>, callback: sendUnaryData<Bytes>) =>
        void run(
          call,
          () => parseAll(call, parse),
          async (context, messages) => {
            let last: unknown;
            for await (const message of messages) last = message;
            sendHeader(call, context);
            callback(null, serialize(last), metadataFromHeaders(context.responseTrailer));
          },
          (context, error) => {
            sendHeader(call, context);
            callback(errorStatus(error, context.responseTrailer));
          },
        )) as UntypedHandleCall;
  }
}

/** The bytes as a Buffer, without copying them. */
function asBuffer(bytes: Uint8Array): Bytes {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

async function* parseAll(call: ServerReadableStream<Bytes, Bytes> | ServerDuplexStream<Bytes, Bytes>, parse: (bytes: Bytes) => Message): AsyncIterable<Message> {
  for await (const bytes of call as AsyncIterable<Bytes>) yield parse(bytes);
}

/** Sends the handler's response headers once, before the first message or the status. */
function sendHeader(call: Call, context: CallContext): void {
  if (context.headerSent) return;
  context.headerSent = true;
  const metadata = metadataFromHeaders(context.responseHeader);
  if (metadata) call.sendMetadata(metadata);
}

async function writeAll(call: Writable, context: CallContext, messages: AsyncIterable<unknown>, serialize: (message: unknown) => Bytes): Promise<void> {
  for await (const message of messages) {
    if (call.cancelled) break;
    sendHeader(call, context);
    if (!call.write(serialize(message))) await drained(call, context.signal);
  }
  sendHeader(call, context);
  (call.end as (metadata?: Metadata) => void)(metadataFromHeaders(context.responseTrailer));
}

function failStream(call: Writable, context: CallContext, error: unknown): void {
  sendHeader(call, context);
  call.emit("error", errorStatus(error, context.responseTrailer));
}

/** Waits for the stream to take more writes, or for the call to end. */
function drained(call: Writable, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => {
      call.off("drain", finish);
      signal.removeEventListener("abort", finish);
      resolve();
    };
    call.once("drain", finish);
    signal.addEventListener("abort", finish, { once: true });
  });
}
