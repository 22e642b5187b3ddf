import { constants, createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrpcCallError, GrpcWireClient } from "./grpc-wire.js";
import { grpcFrame } from "./h2load.js";

const bytes = (b: Buffer): Buffer => b;
const method = (path: string): grpc.MethodDefinition<Buffer, Buffer> => ({
  path,
  requestStream: false,
  responseStream: false,
  requestSerialize: bytes,
  requestDeserialize: bytes,
  responseSerialize: bytes,
  responseDeserialize: bytes,
});

describe("GrpcWireClient against a grpc-js server", () => {
  const server = new grpc.Server();
  let address = "";
  /** Answers of Held calls, kept until a test releases them. */
  const held: Array<() => void> = [];
  let onHeld: () => void = () => undefined;
  const hold = (answer: () => void): void => {
    held.push(answer);
    onHeld();
  };

  beforeAll(async () => {
    server.addService(
      { Echo: method("/test.Wire/Echo"), Fail: method("/test.Wire/Fail"), Slow: method("/test.Wire/Slow"), Held: method("/test.Wire/Held") },
      {
        Held: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => hold(() => callback(null, call.request)),
        Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.concat([call.request, call.request])),
        Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback({ code: grpc.status.FAILED_PRECONDITION, details: "not now: 100% busy" }),
        Slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => void setTimeout(() => callback(null, call.request), 1_000),
      },
    );
    const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });

  afterAll(() => server.forceShutdown());

  it("answers with the response message's bytes, many calls over one connection", async () => {
    const client = new GrpcWireClient(address);
    try {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => client.call("/test.Wire/Echo", Buffer.from(`m${i}`))));
      expect(answers.map((a) => a.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}m${i}`));
      expect((await client.call("/test.Wire/Echo", new Uint8Array(0))).byteLength).toBe(0);
    } finally {
      client.close();
    }
  });

  it("keeps 12,000 calls in flight on one connection without refusing its own streams", async () => {
    const client = new GrpcWireClient(address);
    const count = 12_000;
    try {
      const allHeld = new Promise<void>((resolve) => (onHeld = () => held.length === count && resolve()));
      const calls = Array.from({ length: count }, () => client.call("/test.Wire/Held", Buffer.alloc(300), 60_000).then(
        () => "ok",
        (error: unknown) => (error instanceof GrpcCallError ? error.message : String(error)),
      ));
      await allHeld;
      for (const answer of held.splice(0)) answer();
      const outcomes = await Promise.all(calls);
      // At Node's 10 MB session memory, about 600 of these failed with NGHTTP2_ENHANCE_YOUR_CALM.
      expect(outcomes.filter((outcome) => outcome !== "ok")).toEqual([]);
    } finally {
      onHeld = () => undefined;
      client.close();
    }
  }, 60_000);

  it("rejects with the call's gRPC status code and message", async () => {
    const client = new GrpcWireClient(address);
    try {
      const failure = client.call("/test.Wire/Fail", Buffer.from("x"));
      await expect(failure).rejects.toBeInstanceOf(GrpcCallError);
      await expect(failure).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION, message: "not now: 100% busy" });
      await expect(client.call("/test.Wire/Missing", Buffer.from("x"))).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
    } finally {
      client.close();
    }
  });

  it("gives up at the deadline with DEADLINE_EXCEEDED", async () => {
    const client = new GrpcWireClient(address);
    try {
      await expect(client.call("/test.Wire/Slow", Buffer.from("x"), 200)).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    } finally {
      client.close();
    }
  });

  it("fails calls to an address nobody listens on with UNAVAILABLE", async () => {
    const client = new GrpcWireClient("127.0.0.1:1");
    try {
      await expect(client.call("/test.Wire/Echo", Buffer.from("x"), 2_000)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      client.close();
    }
  });
});

describe("GrpcWireClient against a server that refuses streams", () => {
  /** Refuses the first `refusals` streams it is sent (REFUSED_STREAM, as after a GOAWAY), then echoes. */
  async function refusingServer(refusals: number): Promise<{ server: Http2Server; address: string; streams: () => number }> {
    let streams = 0;
    const server = createServer();
    server.on("stream", (stream) => {
      streams += 1;
      if (streams <= refusals) {
        // Closing with an error code makes the server's stream emit it too.
        stream.on("error", () => undefined);
        stream.close(constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(grpcFrame(Buffer.concat(chunks).subarray(5)));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, streams: () => streams };
  }

  it("sends a refused call again, as gRPC clients do: the server never ran it", async () => {
    const { server, address, streams } = await refusingServer(2);
    const client = new GrpcWireClient(address);
    try {
      expect((await client.call("/test.Wire/Echo", Buffer.from("once"))).toString()).toBe("once");
      expect([streams(), client.resent]).toEqual([3, 2]);
    } finally {
      client.close();
      server.close();
    }
  });

  it("gives up after three refusals with UNAVAILABLE, marked refused", async () => {
    const { server, address, streams } = await refusingServer(10);
    const client = new GrpcWireClient(address);
    try {
      await expect(client.call("/test.Wire/Echo", Buffer.from("x"))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE, refused: true });
      expect(streams()).toBe(3);
    } finally {
      client.close();
      server.close();
    }
  });
});
