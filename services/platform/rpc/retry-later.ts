import { Code, ConnectError } from "@connectrpc/connect";
import { RetryInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";

/**
 * RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` detail: how long the client should wait
 * before it tries again (the message says why, for people).
 */
export function retryLater(message: string, delayMs: number): ConnectError {
  const ms = Math.max(0, Math.ceil(delayMs));
  const retryDelay = { seconds: BigInt(Math.floor(ms / 1_000)), nanos: (ms % 1_000) * 1_000_000 };
  return new ConnectError(message, Code.ResourceExhausted, undefined, [{ desc: RetryInfoSchema, value: { retryDelay } }]);
}
