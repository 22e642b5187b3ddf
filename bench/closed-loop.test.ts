import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unary } from "./closed-loop.js";
import { OrderRequests } from "./generator-calls.js";
import type { UnaryJob } from "./protocol.js";

const bytes = (b: Buffer): Buffer => b;

describe("closed-loop unary runs", () => {
  const server = new grpc.Server();
  let served = 0;
  let address = "";

  beforeAll(async () => {
    server.addService(
      { Check: { path: "/grpc.health.v1.Health/Check", requestStream: false, responseStream: false, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes } },
      {
        // An empty HealthCheckResponse; the loop decodes what it gets.
        Check: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          served += 1;
          callback(null, Buffer.alloc(0));
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });

  afterAll(() => server.forceShutdown());

  const job = (warmupMs: number): UnaryJob => ({
    kind: "unary",
    name: "Health/Check",
    protocol: "grpc",
    address,
    url: `http://${address}`,
    concurrency: 4,
    durationMs: 300,
    warmupMs,
    workload: { call: "health", service: "" },
  });

  it("loads the server through the warm-up and counts only the calls after it", async () => {
    const requests = new OrderRequests(["c"], ["s"], "test");
    served = 0;
    const cold = await unary(job(0), requests);
    const servedCold = served;
    served = 0;
    const warmed = await unary(job(600), requests);

    // Without a warm-up, only the 4 calls that open the connection go uncounted.
    expect(cold.requests).toBe(servedCold - 4);
    expect(warmed.requests).toBeGreaterThan(0);
    // The warm-up's calls reached the server but not the result.
    expect(served - 4 - warmed.requests).toBeGreaterThan(0);
    expect(warmed.errors).toEqual({});
  });
});
