import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { clientTracing } from "./interceptors.js";

/** A gRPC (HTTP/2) client for another OrderFlow service, carrying trace context. */
export function serviceClient<S extends DescService>(service: S, baseUrl: string, defaultTimeoutMs = 5_000): Client<S> {
  return createClient(service, createGrpcTransport({ baseUrl, interceptors: [clientTracing()], defaultTimeoutMs }));
}
