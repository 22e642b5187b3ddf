import { Http2SessionManager } from "@connectrpc/connect-node";
import { once } from "node:events";
import { constants, createServer, type Http2Server, type Http2Session, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { uncaughtDuring } from "../../../test/support/uncaught.js";
import { GuardedSessionManager } from "./session-guard.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("GuardedSessionManager", () => {
  let server: Http2Server;
  let url: string;
  const serverSessions: ServerHttp2Session[] = [];

  beforeEach(async () => {
    serverSessions.length = 0;
    server = createServer();
    server.on("session", (session) => serverSessions.push(session));
    server.on("stream", (stream) => {
      stream.respond({ ":status": 200 });
      stream.end("ok");
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    for (const session of serverSessions) session.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it("survives a GOAWAY on an idle connection followed at once by a request", async () => {
    const manager = new GuardedSessionManager(new Http2SessionManager(url));
    const first = await manager.request("POST", "/", {}, {});
    const session = first.session;
    if (!session) throw new Error("the first stream has no session");
    first.resume();
    await once(first, "close");
    await sleep(10);

    let status: unknown;
    let secondSession: Http2Session | undefined;
    const uncaught = await uncaughtDuring(async () => {
      // The manager destroys the idle session on this GOAWAY; Node raises the error it was
      // destroyed with only after the socket closes, and the next request leaves it first.
      serverSessions[0]?.goaway(constants.NGHTTP2_NO_ERROR);
      await once(session, "goaway");
      expect(session.destroyed).toBe(true);
      const second = await manager.request("POST", "/", {}, {});
      secondSession = second.session;
      const [headers] = (await once(second, "response")) as [Record<string, unknown>];
      status = headers[":status"];
      second.resume();
      await once(second, "close");
    });

    expect(status).toBe(200);
    expect(secondSession === session).toBe(false);
    expect(uncaught).toEqual([]);
    secondSession?.close();
  });
});
