import { createServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { cpuPerCall, findH2load, grpcFrame, runH2load } from "./h2load.js";

describe("cpuPerCall", () => {
  it("divides the server's CPU seconds over the run by the calls, in µs", () => {
    expect(cpuPerCall(10.0, 12.5, 25_000)).toBe(100);
    expect(cpuPerCall(3.21, 3.43, 1_000)).toBe(220);
  });

  it("is null without both readings, without calls, or under 0.1 s of CPU (too few clock ticks)", () => {
    expect(cpuPerCall(undefined, 2, 100)).toBeNull();
    expect(cpuPerCall(1, undefined, 100)).toBeNull();
    expect(cpuPerCall(1, 2, 0)).toBeNull();
    expect(cpuPerCall(1, 1.05, 100)).toBeNull();
  });
});

describe("runH2load (Debian's h2load, where installed)", () => {
  const binary = findH2load();
  it.skipIf(binary === undefined)("runs durations that are not whole milliseconds (a third of a 2 s run as warm-up)", async () => {
    // A gRPC server that answers every call OK, as a unary handler does.
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/grpc" });
        res.addTrailers({ "grpc-status": "0" });
        res.end(grpcFrame(new Uint8Array()));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/test.Echo/Call`;
      const result = await runH2load({ binary: binary!, name: "echo", protocol: "grpc", url, body: grpcFrame(new Uint8Array()), concurrency: 4, durationMs: 500.4, warmupMs: 2_000 / 3 });
      expect(result.requests).toBeGreaterThan(0);
      expect(result.failed).toBe(0);
    } finally {
      server.close();
    }
  });
});

