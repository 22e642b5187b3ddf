import { create, type DescMessage, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { createContextKey, type HandlerContext } from "@connectrpc/connect";

/** True on calls whose transport writes a response's known encoding as it is: gRPC through grpc-js. */
export const writesKnownEncoding = createContextKey(false, { description: "the transport writes known response encodings" });

const knownEncodings = new WeakMap<object, Uint8Array>();

/**
 * A response a handler already holds in binary form (a cached copy, say). Where the
 * transport writes known encodings, the handler returns an empty stand-in that carries
 * the bytes, and the call is spared a decode, an encode and the garbage they leave.
 * Everywhere else (Connect, gRPC-Web, JSON) the real message is answered: `decoded` when the
 * handler holds it too, else the bytes decoded. Interceptors never read responses here; one
 * that did would see the empty stand-in.
 */
export function encodedResponse<Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array | (() => Uint8Array),
  context: HandlerContext,
  decoded?: MessageInitShape<Desc>,
): MessageInitShape<Desc> {
  // Bytes given as a function are built only when used (not when `decoded` is answered).
  const encoding = () => (typeof bytes === "function" ? bytes() : bytes);
  if (!context.values.get(writesKnownEncoding)) return decoded ?? fromBinary(schema, encoding());
  const standIn = create(schema);
  knownEncodings.set(standIn, encoding());
  return standIn;
}

/** The bytes `encodedResponse` attached to a response, if any. */
export function knownEncoding(message: unknown): Uint8Array | undefined {
  return typeof message === "object" && message !== null ? knownEncodings.get(message) : undefined;
}
