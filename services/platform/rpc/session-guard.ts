import type { GrpcTransportOptions } from "@connectrpc/connect-node";
import type { ClientHttp2Stream, ClientSessionRequestOptions, Http2Session, OutgoingHttpHeaders } from "node:http2";

type SessionManager = NonNullable<GrpcTransportOptions["sessionManager"]>;

const ignore = (): void => undefined;

/**
 * connect-node's HTTP/2 session manager, kept from crashing the process. When a GOAWAY arrives
 * while no stream is open (a server's max connection age, a proxy's idle timeout), the manager
 * destroys the session with an error that Node raises only once the socket has closed; a request
 * in between makes the manager leave that session and remove its error listener first, and the
 * error becomes an uncaught exception (connect-node 2.2.0 and 2.3.0). Every session gets an error
 * listener of its own that stays; the manager still sees each error while it listens.
 */
export class GuardedSessionManager implements SessionManager {
  private readonly guarded = new WeakSet<Http2Session>();

  constructor(private readonly manager: SessionManager) {}

  get authority(): string {
    return this.manager.authority;
  }

  async request(method: string, path: string, headers: OutgoingHttpHeaders, options: Omit<ClientSessionRequestOptions, "signal">): Promise<ClientHttp2Stream> {
    const stream = await this.manager.request(method, path, headers, options);
    const session = stream.session;
    if (session && !this.guarded.has(session)) {
      this.guarded.add(session);
      session.on("error", ignore);
    }
    return stream;
  }

  notifyResponseByteRead(stream: ClientHttp2Stream): void {
    this.manager.notifyResponseByteRead(stream);
  }
}
