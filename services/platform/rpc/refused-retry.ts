import { ConnectError, type Interceptor } from "@connectrpc/connect";

const maxAttempts = 3;

/**
 * Whether a call failed because the server refused its HTTP/2 stream (REFUSED_STREAM), which
 * means it never ran it. An error the server answered with (a wire error) never counts, whatever
 * its message says.
 */
export function wasRefused(error: unknown): boolean {
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    if (cause instanceof ConnectError && cause.isWireError) return false;
    if (cause.message.includes("REFUSED_STREAM")) return true;
  }
  return false;
}

/**
 * Sends a unary call again when the server refused its stream, as gRPC clients do on their own:
 * a server that has just sent GOAWAY (its connections' maximum age) refuses the streams a client
 * opened before the GOAWAY reached it, without running them, so sending again is safe.
 */
export function retryRefusedStreams(): Interceptor {
  return (next) => async (req) => {
    if (req.stream) return next(req);
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(req);
      } catch (error) {
        if (attempt >= maxAttempts || req.signal.aborted || !wasRefused(error)) throw error;
      }
    }
  };
}
