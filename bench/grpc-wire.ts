// Unary gRPC calls over one HTTP/2 connection, written on node:http2 without a gRPC
// library: the load generator's client. Per call it costs a fraction of a grpc-js
// client's CPU (channel state, interceptors, a deadline timer per call), and every
// microsecond the generator spends is taken from the system under test on the same
// cores. h2load, the C load tool, speaks gRPC the same way.
import { type ClientHttp2Session, type ClientHttp2Stream, connect, constants, type IncomingHttpHeaders } from "node:http2";
import { uncappedSessionMemory } from "../services/platform/rpc/session-memory.js";
import { grpcFrame } from "./h2load.js";

/** A call that did not end with grpc-status 0: `code` is the gRPC status code. */
export class GrpcCallError extends Error {
  override name = "GrpcCallError";
  constructor(
    readonly code: number,
    message: string,
    /** The server refused the call's stream (REFUSED_STREAM): it never ran the call. */
    readonly refused = false,
  ) {
    super(message);
  }
}

/**
 * Sends of one call when the server refuses its stream. A server closing a connection at its
 * maximum age (GOAWAY; the services' MAX_CONNECTION_AGE_MS) refuses the streams that crossed its
 * GOAWAY, and gRPC clients send those again on a new connection, as the services' own clients do
 * (services/platform/rpc/refused-retry.ts). Counted as failures, they were the bench's errors.
 */
const maxSends = 3;

const UNKNOWN = 2;
const DEADLINE_EXCEEDED = 4;
const INTERNAL = 13;
const UNAVAILABLE = 14;

interface Call {
  deadline: number;
  fail(error: GrpcCallError): void;
}

export class GrpcWireClient {
  private session: ClientHttp2Session | undefined;
  private readonly calls = new Set<Call>();
  /** Calls sent again because the server refused their stream. */
  private resends = 0;
  /** One timer for every call's deadline (checked each 100 ms), rather than one timer per call. */
  private readonly deadlines = setInterval(() => this.expire(), 100).unref();

  constructor(private readonly address: string) {}

  /** Sends `message` to `path` (e.g. /pkg.Service/Method) and resolves with the response message's bytes. */
  call(path: string, message: Uint8Array, timeoutMs = 30_000): Promise<Buffer> {
    return this.send(path, message, Date.now() + timeoutMs, 1);
  }

  private send(path: string, message: Uint8Array, deadline: number, sends: number): Promise<Buffer> {
    return this.sendOnce(path, message, deadline).catch((error: unknown) => {
      if (error instanceof GrpcCallError && error.refused && sends < maxSends && Date.now() < deadline) {
        this.resends += 1;
        return this.send(path, message, deadline, sends + 1);
      }
      throw error;
    });
  }

  private sendOnce(path: string, message: Uint8Array, deadline: number): Promise<Buffer> {
    const timeoutMs = deadline - Date.now();
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = this.connection().request({
          [constants.HTTP2_HEADER_METHOD]: "POST",
          [constants.HTTP2_HEADER_PATH]: path,
          [constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
          [constants.HTTP2_HEADER_TE]: "trailers",
          "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m`,
        });
      } catch (error) {
        reject(new GrpcCallError(UNAVAILABLE, error instanceof Error ? error.message : String(error)));
        return;
      }
      const chunks: Buffer[] = [];
      let status: IncomingHttpHeaders | undefined;
      let settled = false;
      const call: Call = { deadline, fail: (error) => finish(error) };
      const finish = (error?: GrpcCallError): void => {
        if (settled) return;
        settled = true;
        this.calls.delete(call);
        if (error) {
          if (!stream.closed) stream.close(constants.NGHTTP2_CANCEL);
          reject(error);
          return;
        }
        const code = Number(status?.["grpc-status"] ?? UNKNOWN);
        if (code !== 0) {
          reject(new GrpcCallError(code, decodeURIComponent(String(status?.["grpc-message"] ?? `grpc-status ${code}`))));
          return;
        }
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        if (body.byteLength < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.byteLength - 5) {
          reject(new GrpcCallError(INTERNAL, `malformed response frame (${body.byteLength} bytes)`));
          return;
        }
        resolve(body.subarray(5));
      };
      this.calls.add(call);
      // A trailers-only answer (an error before any message) carries the status in its headers.
      stream.on("response", (headers) => {
        if (headers["grpc-status"] !== undefined) status = headers;
      });
      stream.on("trailers", (trailers) => (status = trailers));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const refused = (): boolean => stream.rstCode === constants.NGHTTP2_REFUSED_STREAM;
      stream.on("error", (error) => finish(new GrpcCallError(UNAVAILABLE, error.message, refused())));
      stream.on("close", () => finish(status ? undefined : new GrpcCallError(UNAVAILABLE, `stream closed without a status (HTTP/2 code ${stream.rstCode ?? "none"})`, refused())));
      stream.end(grpcFrame(message));
    });
  }

  /** How many times a call was sent again after its stream was refused, since the client was made. */
  get resent(): number {
    return this.resends;
  }

  close(): void {
    clearInterval(this.deadlines);
    this.session?.close();
    this.session = undefined;
  }

  /** The connection, opened again after it closed or failed. */
  private connection(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    // Capped, the generator would fail its own streams once some 10,000 calls were in flight:
    // failures of the load tool that the bench would count as the system's.
    const session = connect(`http://${this.address}`, uncappedSessionMemory);
    // A failed connection fails its streams, which fail their calls; the next call reconnects.
    session.on("error", () => undefined);
    session.on("close", () => {
      if (this.session === session) this.session = undefined;
    });
    this.session = session;
    return session;
  }

  private expire(): void {
    const now = Date.now();
    for (const call of this.calls) if (call.deadline <= now) call.fail(new GrpcCallError(DEADLINE_EXCEEDED, "deadline exceeded"));
  }
}
