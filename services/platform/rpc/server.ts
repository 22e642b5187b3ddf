import { createServer as createHttp1Server, type Server as Http1Server } from "node:http";
import { createServer as createHttp2Server, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { ServiceBinding } from "./binding.js";
import { uncappedSessionMemory } from "./session-memory.js";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "../logger.js";
import { servedApi } from "./chain.js";
import { GrpcJsTransport } from "./grpc-js/server.js";
import type { HealthState } from "./health.js";

/**
 * Who serves HTTP/2 (h2c) connections: "grpc-js" (native gRPC, fastest; such
 * connections then carry only the gRPC protocol) or "connect" (connect-node
 * serves gRPC, gRPC-Web and Connect on them). HTTP/1.1 always goes to connect-node.
 */
export type RpcTransport = "grpc-js" | "connect";

export interface RpcServerOptions {
  services: ServiceBinding[];
  health: HealthState;
  logger: Logger;
  port: number;
  host?: string;
  /**
   * Closes each HTTP/2 connection gracefully (GOAWAY) after about this long. Without a
   * mesh, kube-proxy balances per connection: reconnecting clients reach replicas the
   * HPA added since they connected. 0 = never.
   */
  maxConnectionAgeMs?: number;
  interceptors?: Interceptor[];
  /** Default "grpc-js". */
  transport?: RpcTransport;
}

const http2Preface = Buffer.from("PRI * HTTP/2.0");

/**
 * One plain TCP port for gRPC (h2c), gRPC-Web and Connect over HTTP/2 and
 * HTTP/1.1. Node's http2 server does not serve cleartext HTTP/1.1, so each
 * connection's first bytes decide: the HTTP/2 preface goes to grpc-js (or, with
 * transport "connect", to an http2 server), anything else to the http server.
 * Both transports serve the same implementations through the same interceptor
 * chain (chain.ts); the http2 and http servers share one connect-node handler.
 */
export class RpcServer {
  private readonly tcp: TcpServer;
  private readonly h2: Http2Server;
  private readonly grpcJs: GrpcJsTransport | undefined;
  private readonly h1: Http1Server;
  private readonly sockets = new Set<Socket>();
  private readonly grpcJsSockets = new Set<Socket>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private inFlight = 0;
  private drained: (() => void) | undefined;

  constructor(private readonly options: RpcServerOptions) {
    const api = servedApi(options.services, options.health, options.logger, options.interceptors);
    const routes = (router: ConnectRouter) => {
      for (const { service, impl } of api.bindings) router.service(service, impl);
    };
    const handler = connectNodeAdapter({ routes, interceptors: api.interceptors });
    const track = () => {
      this.inFlight++;
      return () => {
        this.inFlight--;
        if (this.inFlight === 0) this.drained?.();
      };
    };
    const counted = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
      res.once("close", track());
      handler(req as IncomingMessage, res as ServerResponse);
    };
    this.h2 = createHttp2Server(uncappedSessionMemory, counted);
    this.h2.on("session", (session: ServerHttp2Session) => {
      this.sessions.add(session);
      const age = options.maxConnectionAgeMs ?? 0;
      // ±10 % jitter so the connections of one client do not all reconnect at once.
      const timer = age > 0 ? setTimeout(() => session.close(), age * (0.9 + Math.random() * 0.2)).unref() : undefined;
      session.once("close", () => {
        clearTimeout(timer);
        this.sessions.delete(session);
      });
    });
    this.grpcJs = (options.transport ?? "grpc-js") === "grpc-js" ? new GrpcJsTransport(api, { maxConnectionAgeMs: options.maxConnectionAgeMs ?? 0, track }) : undefined;
    this.h1 = createHttp1Server(counted);
    this.h1.keepAliveTimeout = 65_000;
    this.tcp = createTcpServer((socket) => this.route(socket));
  }

  private route(socket: Socket): void {
    // As Node's own http and http2 servers do for the connections they accept: with Nagle's
    // algorithm on, a response written in pieces (a stream's messages over HTTP/1.1) holds each
    // small piece until the client acknowledges the last, which a delayed ACK makes ~40 ms.
    socket.setNoDelay(true);
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    // Until a server takes the socket, its errors are ours: a client that resets the connection
    // before its first byte (a TCP probe, a scanner) would otherwise end the process.
    const beforeFirstByte = (): void => void socket.destroy();
    socket.on("error", beforeFirstByte);
    socket.once("data", (first: Buffer) => {
      socket.off("error", beforeFirstByte);
      socket.pause();
      socket.unshift(first);
      const isHttp2 = first.subarray(0, http2Preface.length).equals(http2Preface.subarray(0, Math.min(first.length, http2Preface.length)));
      if (isHttp2) {
        // The http2 session reads what is buffered on the next tick; a flowing socket would drop it.
        if (this.grpcJs) {
          this.grpcJsSockets.add(socket);
          socket.once("close", () => this.grpcJsSockets.delete(socket));
          this.grpcJs.inject(socket);
        } else {
          this.h2.emit("connection", socket);
        }
      } else {
        this.h1.emit("connection", socket);
        socket.resume();
      }
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => this.tcp.once("error", reject).listen(this.options.port, this.options.host ?? "0.0.0.0", resolve));
    return (this.tcp.address() as AddressInfo).port;
  }

  /** Stops accepting, lets in-flight calls finish for up to graceMs, then closes what is left. */
  async close(graceMs: number): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    for (const session of this.sessions) session.close();
    this.grpcJs?.drain(graceMs);
    this.h1.closeIdleConnections();
    const idle = this.inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.drained = resolve));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([idle, graceOver]);
    // A grpc-js handler is done before its status is on the wire; its connections,
    // already sent GOAWAY by drain, close by themselves once their last stream is flushed.
    const grpcJsClosed = Promise.all([...this.grpcJsSockets].map((socket) => new Promise((resolve) => socket.once("close", resolve))));
    await Promise.race([grpcJsClosed, graceOver]);
    clearTimeout(timer);
    for (const socket of this.sockets) socket.destroy();
    this.grpcJs?.destroy();
    await stopped;
  }
}
