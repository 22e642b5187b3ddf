import { create, type DescMessage, fromBinary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { createContextKey, type HandlerContext } from "@connectrpc/connect";

/** True on calls whose transport writes a response's known encoding as it is: gRPC through grpc-js. */
export const writesKnownEncoding = createContextKey(false, { description: "the transport writes known response encodings" });

const knownEncodings = new WeakMap<object, Uint8Array>();

/**
 * A response a handler already holds in binary form (a cached copy, say). Where the
 * transport writes known encodings, `answer` returns an empty stand-in that carries the
 * bytes, and the call is spared a decode, an encode and the garbage they leave; one stand-in
 * serves every call that answers these bytes. Everywhere else (Connect, gRPC-Web, JSON) the
 * real message is answered: `decoded` when the handler holds it too, else the bytes decoded.
 * Interceptors never read responses here; one that did would see the empty stand-in.
 */
export class EncodedResponse<Desc extends DescMessage> {
  private standIn: MessageShape<Desc> | undefined;

  constructor(
    readonly schema: Desc,
    readonly bytes: Uint8Array,
  ) {}

  answer(context: HandlerContext, decoded?: MessageInitShape<Desc>): MessageInitShape<Desc> {
    if (!context.values.get(writesKnownEncoding)) return decoded ?? fromBinary(this.schema, this.bytes);
    if (!this.standIn) {
      this.standIn = create(this.schema);
      knownEncodings.set(this.standIn, this.bytes);
    }
    return this.standIn;
  }
}

/** The bytes an `EncodedResponse` attached to a response, if any. */
export function knownEncoding(message: unknown): Uint8Array | undefined {
  return typeof message === "object" && message !== null ? knownEncodings.get(message) : undefined;
}
