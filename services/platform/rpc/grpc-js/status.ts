import { Code, ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { Metadata, type StatusObject } from "@grpc/grpc-js";
import { metadataFromHeaders } from "./metadata.js";

/**
 * The gRPC status for an error, built by connect's own setTrailerStatus: the
 * same code, message and grpc-status-details-bin (google.rpc.Status with the
 * Any-packed details) connect-node sends, plus the call's response trailers and
 * the error's metadata. Anything that is not a ConnectError is INTERNAL
 * "internal error", as in connect-node.
 */
export function errorStatus(error: unknown, trailer: Headers): StatusObject & { metadata: Metadata } {
  const connectError = error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal, undefined, undefined, error);
  const headers = setTrailerStatus(new Headers(trailer), connectError);
  const skip = new Set(["grpc-status", "grpc-message"]);
  return {
    code: connectError.code as number,
    details: connectError.rawMessage,
    metadata: metadataFromHeaders(headers, skip) ?? new Metadata(),
  };
}
