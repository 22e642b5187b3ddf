import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { clientTracing } from "./interceptors.js";
import { retryRefusedStreams } from "./refused-retry.js";
import { GuardedSessionManager } from "./session-guard.js";
import { uncappedSessionMemory } from "./session-memory.js";

/** A gRPC (HTTP/2) client for another OrderFlow service, carrying trace context, that rides out the server's connection age-outs. */
export function serviceClient<S extends DescService>(service: S, baseUrl: string, defaultTimeoutMs = 5_000): Client<S> {
  const sessionManager = new GuardedSessionManager(new Http2SessionManager(baseUrl, undefined, uncappedSessionMemory));
  return createClient(service, createGrpcTransport({ baseUrl, sessionManager, interceptors: [retryRefusedStreams(), clientTracing()], defaultTimeoutMs }));
}
