import { channel } from "node:diagnostics_channel";
import { once } from "node:events";
import { connect, createServer, type ClientHttp2Session, type Http2Server, type Http2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { keepStreamTablesUnchained, StreamSet, StreamTable, stopKeepingStreamTablesUnchained, type Warns } from "./stream-tables.js";

function stateOf(session: Http2Session): { streams: unknown; pendingStreams: unknown } {
  const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === "state");
  if (key === undefined) throw new Error("the session has no state");
  return (session as unknown as Record<symbol, { streams: unknown; pendingStreams: unknown }>)[key] as { streams: unknown; pendingStreams: unknown };
}

function warnings(): Warns & { seen: string[] } {
  const seen: string[] = [];
  return { seen, warn: (message) => seen.push(message) };
}

async function request(client: ClientHttp2Session, path: string): Promise<string> {
  const stream = client.request({ ":path": path, ":method": "POST" });
  stream.end("ping");
  let body = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => (body += chunk));
  await once(stream, "close");
  return body;
}

describe("StreamTable", () => {
  it("keeps entries by id as a Map does", () => {
    const table = new StreamTable<string>();
    table.set(1, "a").set(3, "b").set(3, "c");
    expect(table.size).toBe(2);
    expect(table.get(3)).toBe("c");
    expect(table.has(5)).toBe(false);
    expect(table.get(5)).toBeUndefined();
    expect(table.delete(1)).toBe(true);
    expect(table.delete(1)).toBe(false);
    expect([...table]).toEqual([[3, "c"]]);
  });

  it("visits every entry even when each visit deletes it, as Node does when it destroys a session's streams", () => {
    const table = new StreamTable<string>();
    for (const id of [1, 3, 5, 7]) table.set(id, `s${id}`);
    const visited: string[] = [];
    table.forEach((value, id) => {
      visited.push(value);
      table.delete(id);
    });
    expect(visited).toEqual(["s1", "s3", "s5", "s7"]);
    expect(table.size).toBe(0);
  });
});

describe("StreamSet", () => {
  it("keeps each value once and removes any of them", () => {
    const set = new StreamSet<string>();
    set.add("a").add("b").add("a").add("c");
    expect(set.size).toBe(3);
    expect(set.delete("a")).toBe(true);
    expect(set.delete("a")).toBe(false);
    expect(set.has("c")).toBe(true);
    expect([...set].sort()).toEqual(["b", "c"]);
    const visited: string[] = [];
    set.forEach((value) => {
      visited.push(value);
      set.delete(value);
    });
    expect(visited.sort()).toEqual(["b", "c"]);
    expect(set.size).toBe(0);
  });
});

describe("keepStreamTablesUnchained", () => {
  let server: Http2Server;
  let url: string;
  const serverSessions: Http2Session[] = [];

  beforeEach(async () => {
    serverSessions.length = 0;
    server = createServer();
    server.on("session", (session) => serverSessions.push(session));
    server.on("stream", (stream, headers) => {
      stream.resume();
      stream.on("end", () => {
        if (headers[":path"] === "/hold") return;
        stream.respond({ ":status": 200 });
        stream.end(`answer to ${String(headers[":path"])}`);
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    stopKeepingStreamTablesUnchained();
    for (const session of serverSessions) session.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it("gives server and client sessions the unchained tables, through which every call is answered", async () => {
    keepStreamTablesUnchained(warnings());
    const client = connect(url);
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => request(client, `/call-${i}`)));
    expect(answers[0]).toBe("answer to /call-0");
    expect(answers[199]).toBe("answer to /call-199");
    for (const session of [client, serverSessions[0] as Http2Session]) {
      const state = stateOf(session);
      expect(state.streams).toBeInstanceOf(StreamTable);
      expect(state.pendingStreams).toBeInstanceOf(StreamSet);
      expect((state.streams as StreamTable<unknown>).size).toBe(0);
    }
    client.close();
    await once(client, "close");
  });

  it("destroys the streams still open when their session is destroyed", async () => {
    keepStreamTablesUnchained(warnings());
    const client = connect(url);
    await request(client, "/first");
    const held = Array.from({ length: 3 }, () => {
      const stream = client.request({ ":path": "/hold", ":method": "POST" });
      stream.end("ping");
      stream.on("error", () => undefined);
      return stream;
    });
    await Promise.all(held.map((stream) => (stream.pending ? once(stream, "ready") : undefined)));
    const table = stateOf(client).streams as StreamTable<unknown>;
    expect(table.size).toBe(3);
    client.destroy();
    await Promise.all(held.map((stream) => once(stream, "close")));
    expect(held.every((stream) => stream.destroyed)).toBe(true);
    expect(table.size).toBe(0);
  });

  it("warns once and leaves Node's tables alone when a session's state has a shape it does not know", async () => {
    const logger = warnings();
    keepStreamTablesUnchained(logger);
    channel("http2.server.stream.created").publish({ stream: { session: {} } });
    channel("http2.server.stream.created").publish({ stream: { session: {} } });
    expect(logger.seen).toEqual(["HTTP/2 stream tables left as Node keeps them: its session state has an unknown shape"]);
    const client = connect(url);
    await request(client, "/after");
    expect(stateOf(client).streams).not.toBeInstanceOf(StreamTable);
    client.close();
    await once(client, "close");
  });
});
