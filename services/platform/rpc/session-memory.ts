/**
 * HTTP/2 session options with no cap on the session's memory, as grpc-js sets for its own
 * clients and servers. At Node's default of 10 MB, a session holding some 10,000 calls in flight
 * fails its streams with NGHTTP2_ENHANCE_YOUR_CALM, which connect-node answers as INTERNAL: a
 * failure of the transport, not of the call. Load is bounded where it is admitted instead (the
 * saga's bound on orders in progress, the rate limit).
 */
export const uncappedSessionMemory = { maxSessionMemory: Number.MAX_SAFE_INTEGER } as const;
