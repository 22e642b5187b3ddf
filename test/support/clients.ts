// Clients for end-to-end tests: the same services called three independent ways
// (connect-es, @grpc/grpc-js, buf curl) plus plain HTTP/1.1 JSON as curl sends it.
import { spawn } from "node:child_process";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { join } from "node:path";
import { create, fromBinary, toBinary, type DescMessage, type DescMethodServerStreaming, type DescMethodUnary, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  type CallOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  credentials,
  makeGenericClientConstructor,
  Metadata,
  type MethodDefinition,
  type ServiceError,
} from "@grpc/grpc-js";
import { repoRoot } from "../../tools/system.js";

// ---------------------------------------------------------------- connect-es

export type ConnectProtocol = "grpc" | "connect" | "grpc-web";

/**
 * A connect-es client. "grpc" speaks gRPC over HTTP/2 (h2c); "connect" and
 * "grpc-web" use HTTP/1.1 unless httpVersion "2" is asked for.
 */
export function connectClient<S extends DescService>(service: S, baseUrl: string, protocol: ConnectProtocol = "grpc", httpVersion: "1.1" | "2" = "1.1"): Client<S> {
  if (protocol === "grpc") return createClient(service, createGrpcTransport({ baseUrl }));
  if (protocol === "grpc-web") return createClient(service, createGrpcWebTransport({ baseUrl, httpVersion }));
  return createClient(service, createConnectTransport({ baseUrl, httpVersion }));
}

// ---------------------------------------------------------------- grpc-js

type UnaryMethod = (request: unknown, metadata: Metadata, options: CallOptions, callback: (error: ServiceError | null, value?: unknown) => void) => ClientUnaryCall;
type ServerStreamMethod = (request: unknown, metadata: Metadata, options: CallOptions) => ClientReadableStream<unknown>;

export interface GrpcCallOptions {
  /** Request metadata (headers). */
  metadata?: Record<string, string>;
  /** Deadline in ms from now (default 10 s). */
  timeoutMs?: number;
}

export interface GrpcJsClient {
  /** Calls a unary method; rejects with grpc-js's ServiceError (code, details, metadata). */
  unary<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, request: MessageInitShape<I>, options?: GrpcCallOptions): Promise<MessageShape<O>>;
  /** Calls a server-streaming method; iterate the messages with `for await`. */
  serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    options?: GrpcCallOptions,
  ): AsyncIterable<MessageShape<O>> & { cancel(): void };
  close(): void;
}

/** grpc-js service definition from a protobuf-es service: (de)serialization by @bufbuild/protobuf. */
export function grpcJsDefinition(service: DescService): Record<string, MethodDefinition<unknown, unknown>> {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    const clientStreams = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
    const serverStreams = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream: clientStreams,
      responseStream: serverStreams,
      requestSerialize: (value) => Buffer.from(toBinary(method.input, value as MessageShape<typeof method.input>)),
      requestDeserialize: (bytes) => fromBinary(method.input, bytes),
      responseSerialize: (value) => Buffer.from(toBinary(method.output, value as MessageShape<typeof method.output>)),
      responseDeserialize: (bytes) => fromBinary(method.output, bytes),
    };
  }
  return definition;
}

/** A @grpc/grpc-js client (makeGenericClientConstructor) for a service at host:port, plaintext. */
export function grpcJsClient(service: DescService, address: string): GrpcJsClient {
  const Constructor = makeGenericClientConstructor(grpcJsDefinition(service), service.typeName);
  const client = new Constructor(address, credentials.createInsecure());
  const methodOf = <F>(localName: string): F => {
    const fn = (client as unknown as Record<string, unknown>)[localName];
    if (typeof fn !== "function") throw new Error(`${service.typeName} has no method ${localName}`);
    return ((...args: unknown[]) => Reflect.apply(fn, client, args) as unknown) as F;
  };
  const metadataOf = (options?: GrpcCallOptions) => {
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(options?.metadata ?? {})) metadata.set(key, value);
    return metadata;
  };
  const deadline = (options?: GrpcCallOptions) => ({ deadline: Date.now() + (options?.timeoutMs ?? 10_000) });
  return {
    unary(method, request, options) {
      const call = methodOf<UnaryMethod>(method.localName);
      return new Promise((resolve, reject) => {
        call(create(method.input, request), metadataOf(options), deadline(options), (error, value) => {
          if (error) reject(error);
          else resolve(value as MessageShape<typeof method.output>);
        });
      });
    },
    serverStream(method, request, options) {
      const call = methodOf<ServerStreamMethod>(method.localName);
      const stream = call(create(method.input, request), metadataOf(options), deadline(options));
      return {
        [Symbol.asyncIterator]: () => (stream[Symbol.asyncIterator]() as AsyncIterator<MessageShape<typeof method.output>>),
        cancel: () => stream.cancel(),
      };
    },
    close: () => client.close(),
  };
}

// ---------------------------------------------------------------- buf curl

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs node_modules/.bin/buf curl with the given arguments. */
export function bufCurl(args: string[], timeoutMs = 20_000): Promise<CommandResult> {
  const buf = join(repoRoot(), "node_modules", ".bin", "buf");
  return new Promise((resolve, reject) => {
    const child = spawn(buf, ["curl", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * `buf curl --protocol grpc --http2-prior-knowledge <baseUrl>/<method> -d <body>`:
 * the schema comes from the server's reflection. Returns the parsed JSON answer
 * (or throws with buf's output when it fails).
 */
export async function bufCurlGrpc(baseUrl: string, method: string, body: unknown = {}): Promise<unknown> {
  const result = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", "-d", JSON.stringify(body), `${baseUrl}/${method}`]);
  if (result.code !== 0) throw new BufCurlError(result);
  return JSON.parse(result.stdout) as unknown;
}

export class BufCurlError extends Error {
  override name = "BufCurlError";
  constructor(readonly result: CommandResult) {
    super(`buf curl exited with ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
  }
}

// ---------------------------------------------------------------- HTTP/1.1 JSON

export interface HttpResult {
  status: number;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  /** The body parsed as JSON (undefined when empty or not JSON). */
  json: unknown;
  text: string;
}

/**
 * POSTs a JSON body over HTTP/1.1 with node:http (as `curl -H 'content-type:
 * application/json' -d ...` does): a Connect-protocol unary call, e.g.
 * postJson(url, "/orderflow.order.v1.OrderService/GetOrder", { orderId }).
 */
export function postJson(baseUrl: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
  const url = new URL(path, baseUrl);
  const payload = Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "content-length": String(payload.length), ...headers },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.once("error", reject);
        res.once("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = text ? (JSON.parse(text) as unknown) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, httpVersion: res.httpVersion, headers: res.headers, json, text });
        });
      },
    );
    req.once("timeout", () => req.destroy(new Error(`POST ${url.href} timed out`)));
    req.once("error", reject);
    req.end(payload);
  });
}
