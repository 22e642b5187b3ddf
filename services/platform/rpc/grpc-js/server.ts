import { createServiceImplSpec } from "@connectrpc/connect";
import { type ConnectionInjector, Server, ServerCredentials } from "@grpc/grpc-js";
import type { Duplex } from "node:stream";
import type { ServedApi } from "../chain.js";
import { grpcJsHandler, type TrackCall } from "./handlers.js";

const identity = (bytes: Buffer) => bytes;
const kinds = { unary: "unary", server_streaming: "serverStream", client_streaming: "clientStream", bidi_streaming: "bidi" } as const;

export interface GrpcJsOptions {
  /** grpc.max_connection_age_ms: GOAWAY after about this long (grpc-js adds ±10 % jitter); 0 = never. */
  maxConnectionAgeMs: number;
  track: TrackCall;
}

/**
 * A grpc-js server without a listening socket of its own: RpcServer injects
 * the h2c connections it accepts. Every method of every binding is registered
 * with a handler that runs the connect implementation (see handlers.ts).
 */
export class GrpcJsTransport {
  private readonly server: Server;
  private readonly injector: ConnectionInjector;

  constructor(api: ServedApi, options: GrpcJsOptions) {
    this.server = new Server({
      "grpc.enable_channelz": 0,
      ...(options.maxConnectionAgeMs > 0 ? { "grpc.max_connection_age_ms": options.maxConnectionAgeMs } : {}),
    });
    for (const { service, impl } of api.bindings) {
      const spec = createServiceImplSpec(service, impl);
      for (const method of Object.values(spec.methods)) {
        this.server.register(`/${service.typeName}/${method.method.name}`, grpcJsHandler(method, api.interceptors, options.track), identity, identity, kinds[method.kind]);
      }
    }
    this.injector = this.server.createConnectionInjector(ServerCredentials.createInsecure());
  }

  inject(socket: Duplex): void {
    this.injector.injectConnection(socket);
  }

  /** GOAWAY on every connection; connections still open after graceMs are cancelled. */
  drain(graceMs: number): void {
    this.injector.drain(graceMs);
  }

  destroy(): void {
    this.injector.destroy();
  }
}
