import { connect } from "node:http2";
import { request } from "node:http";
import { createConnection, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../../gen/grpc/health/v1/health_pb.js";
import { uncaughtDuring } from "../../../test/support/uncaught.js";
import { createLogger } from "../logger.js";
import { serviceClient } from "./client.js";
import { HealthState } from "./health.js";
import { RpcServer, type RpcTransport } from "./server.js";

/** One Connect call over HTTP/1.1; `agent: false` makes it on a connection of its own. */
function http1Json(port: number, path: string, body: string, agent?: false): Promise<{ version: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: "POST", headers: { "content-type": "application/json" }, ...(agent === false ? { agent } : {}) }, (res) => {
      let data = "";
      res.on("data", (chunk: Buffer) => (data += chunk.toString()));
      res.on("end", () => resolve({ version: res.httpVersion, body: data }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

function h2cRequest(port: number, path: string, contentType: string, body: string | Buffer): Promise<{ status: number; contentType: string; body: string }> {
  const session = connect(`http://127.0.0.1:${port}`);
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": contentType, te: "trailers" });
    let status = 0;
    let type = "";
    let data = "";
    stream.on("response", (headers) => {
      status = Number(headers[":status"]);
      type = String(headers["content-type"] ?? "");
    });
    stream.on("data", (chunk: Buffer) => (data += chunk.toString("latin1")));
    stream.on("end", () => {
      session.close();
      resolve({ status, contentType: type, body: data });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

/** A server of Health alone for the enclosing describe block; the returned function gives its port once it listens. */
function healthServer(transport: RpcTransport, maxConnectionAgeMs?: number): () => number {
  const health = new HealthState([], []);
  const server = new RpcServer({ services: [], health, logger: createLogger("test", "error"), port: 0, host: "127.0.0.1", transport, ...(maxConnectionAgeMs !== undefined && { maxConnectionAgeMs }) });
  let port = 0;
  beforeAll(async () => {
    await health.start(60_000);
    port = await server.listen();
  });
  afterAll(() => server.close(1_000));
  return () => port;
}

describe.each<RpcTransport>(["grpc-js", "connect"])("RpcServer with transport %s", (transport) => {
  const port = healthServer(transport, 300);

  it("serves Connect over HTTP/1.1 and gRPC over h2c on one port", async () => {
    expect(await http1Json(port(), "/grpc.health.v1.Health/Check", "{}")).toEqual({ version: "1.1", body: '{"status":"SERVING"}' });
    // gRPC: a 5-byte envelope around an empty HealthCheckRequest; the reply carries status SERVING (field 1 = 1).
    const grpc = await h2cRequest(port(), "/grpc.health.v1.Health/Check", "application/grpc", Buffer.from([0, 0, 0, 0, 0]));
    expect(grpc.status).toBe(200);
    expect(grpc.contentType).toMatch(/^application\/grpc/);
    expect(Buffer.from(grpc.body, "latin1")).toEqual(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
  });

  it.runIf(transport === "connect")("serves Connect over h2c too", async () => {
    const body = await h2cRequest(port(), "/grpc.health.v1.Health/Check", "application/json", "{}");
    expect(body.body).toBe('{"status":"SERVING"}');
  });

  it("turns Nagle's algorithm off on the connections it accepts, HTTP/1.1 ones too", async () => {
    const original = Socket.prototype.setNoDelay;
    // The server's side of a connection is the socket whose local port is the server's.
    const onServerSide: Array<boolean | undefined> = [];
    const setNoDelay = vi.spyOn(Socket.prototype, "setNoDelay").mockImplementation(function (this: Socket, noDelay?: boolean) {
      if (this.localPort === port()) onServerSide.push(noDelay);
      return original.call(this, noDelay);
    });
    try {
      await http1Json(port(), "/grpc.health.v1.Health/Check", "{}", false);
    } finally {
      setNoDelay.mockRestore();
    }
    expect(onServerSide).toContain(true);
  });

  it("outlives clients that reset their connection before sending a byte (probes, scanners)", async () => {
    const uncaught = await uncaughtDuring(async () => {
      for (let i = 0; i < 5; i++) {
        await new Promise<void>((resolve, reject) => {
          const socket = createConnection({ host: "127.0.0.1", port: port() }, () => {
            socket.resetAndDestroy();
            resolve();
          });
          socket.once("error", reject);
        });
      }
    }, 100);
    expect(uncaught).toEqual([]);
    expect((await http1Json(port(), "/grpc.health.v1.Health/Check", "{}")).body).toBe('{"status":"SERVING"}');
  });

  it("closes HTTP/2 connections gracefully once they reach the maximum age", async () => {
    const session = connect(`http://127.0.0.1:${port()}`);
    const started = Date.now();
    await new Promise<void>((resolve) => session.once("goaway", () => resolve()));
    const age = Date.now() - started;
    expect(age).toBeGreaterThanOrEqual(250);
    session.destroy();
  });

  it("keeps a service client's calls answered across the connections' age-outs, without an uncaught error", async () => {
    const client = serviceClient(Health, `http://127.0.0.1:${port()}`);
    const statuses: Status[] = [];
    const uncaught = await uncaughtDuring(async () => {
      // Calls one at a time with short pauses, so that some GOAWAYs find the connection idle:
      // for 1.5 s (five age-outs) and at least 101 calls, which a loaded machine may take longer to make.
      const started = Date.now();
      while ((Date.now() - started < 1_500 || statuses.length <= 100) && Date.now() - started < 15_000) {
        statuses.push((await client.check({})).status);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }, 50);
    expect(statuses.length).toBeGreaterThan(100);
    expect(statuses.every((status) => status === Status.SERVING)).toBe(true);
    expect(uncaught).toEqual([]);
  });
});

describe.each<RpcTransport>(["grpc-js", "connect"])("RpcServer with transport %s, one connection", (transport) => {
  const port = healthServer(transport);

  it("answers a service client's 12,000 calls held in flight at once", async () => {
    const client = serviceClient(Health, `http://127.0.0.1:${port()}`, 60_000);
    const answers = await Promise.allSettled(Array.from({ length: 12_000 }, () => client.check({})));
    const failures = answers.flatMap((answer) => (answer.status === "rejected" ? [String(answer.reason)] : []));
    expect(failures.slice(0, 3), `${failures.length} of 12,000 failed`).toEqual([]);
  }, 60_000);
});
