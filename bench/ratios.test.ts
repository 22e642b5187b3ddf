import { describe, expect, it } from "vitest";
import type { H2loadResult } from "./h2load.js";
import type { JetStreamCeilingResult, PgCeilingResult, UnaryResult } from "./protocol.js";
import { ratiosOf } from "./ratios.js";
import { alternatedBareName, alternatedRemediedName, alternatedStackName } from "./transports.js";

const latency = { count: 1, p50: 1, p90: 1, p99: 1, max: 1, mean: 1 };
const unary = (name: string, protocol: "grpc" | "connect", perSec: number): UnaryResult => ({
  kind: "unary",
  name,
  protocol,
  concurrency: 32,
  durationMs: 1_000,
  requests: perSec,
  errors: {},
  perSec,
  latency,
  exhausted: false,
  generatorCpuPercent: 50,
});
const h2load = (name: string, perSec: number, serverCpuUsPerCall: number, alternated = false): H2loadResult => ({
  name,
  protocol: "grpc",
  http: "h2",
  concurrency: 32,
  durationMs: 1_000,
  requests: perSec,
  failed: 0,
  perSec,
  latencyMeanMs: 1,
  latencyMaxMs: 2,
  serverCpuUsPerCall,
  ...(alternated ? { alternated: { with: "x", serverCpuUsPerCallByRound: [serverCpuUsPerCall] } } : {}),
});
const postgres: PgCeilingResult = { kind: "ceiling-pg", connections: 16, durationMs: 1_000, transactions: 5_000, txPerSec: 5_000, latency, postgresVersion: "15" };
const jetstream: JetStreamCeilingResult = { kind: "ceiling-jetstream", messages: 1, payloadBytes: 128, window: 256, roundTripMsgsPerSec: 20_000, publishMsgsPerSec: 20_000, elapsedMs: 1 };

describe("ratiosOf", () => {
  const ratios = ratiosOf({
    queries: [unary("GetOrder warm", "grpc", 8_000), unary("CreateOrder", "grpc", 1_000)],
    transport: [],
    grpcJs: unary("Health/Check bare grpc-js", "grpc", 10_000),
    postgres,
    jetstream,
    transportH2load: [
      h2load("Health/Check bare grpc-js", 20_000, 50),
      h2load(alternatedBareName, 16_000, 60, true),
      h2load(alternatedStackName, 14_000, 64, true),
      h2load(alternatedRemediedName, 18_000, 40, true),
      h2load("GetOrder warm (one id)", 12_000, 80, true),
    ],
    maxCompletedPerSec: 1_250,
  });
  const byName = new Map(ratios.map((r) => [r.name, r]));

  it("sets the Node generator's figures beside the bare grpc-js server's, and the sagas beside the raw ceilings", () => {
    expect(byName.get("GetOrder warm gRPC vs bare grpc-js")).toMatchObject({ system: 8_000, ceiling: 10_000, ratio: 0.8, note: "goal ≥ 0.8" });
    expect(byName.get("CreateOrder gRPC vs bare grpc-js")?.ratio).toBe(0.1);
    expect(byName.get("sagas/s vs Postgres tx/s")).toMatchObject({ ratio: 0.25, note: "≈ 4 raw transactions' worth per saga" });
    expect(byName.get("sagas/s vs the goal")?.ratio).toBe(0.735);
  });

  it("compares a GetOrder measured in alternated rounds with the bare server of those rounds, by req/s and by server CPU per call", () => {
    expect(byName.get("h2load: GetOrder warm (one id) gRPC vs bare grpc-js")).toMatchObject({ system: 12_000, ceiling: 16_000, ratio: 0.75 });
    expect(byName.get("h2load CPU: GetOrder warm (one id) gRPC vs bare grpc-js")).toMatchObject({ system: 12_500, ceiling: 16_666.7, ratio: 0.75 });
    expect([...byName.keys()].filter((name) => name.includes(alternatedBareName))).toEqual([]);
  });

  it("sets GetOrder beside the order service's Health/Check of the same rounds: its own work on the server stack", () => {
    expect(byName.get(`h2load CPU: ${alternatedStackName} gRPC vs bare grpc-js`)).toMatchObject({ ratio: 0.937, note: "server CPU per call, 4 alternated rounds (median); transport + platform server stack" });
    expect(byName.get("h2load CPU: GetOrder warm (one id) vs the order service's Health/Check")).toMatchObject({ system: 12_500, ceiling: 15_625, ratio: 0.8 });
  });

  it("sets GetOrder beside the bare server given the services' GC remedies and allocator, and that server beside the plain one", () => {
    expect(byName.get("h2load: GetOrder warm (one id) gRPC vs grpc-js with the services' GC remedies and allocator")).toMatchObject({ system: 12_000, ceiling: 18_000, ratio: 0.667, note: "h2load, 4 alternated rounds (median); the GC remedies and allocator on both sides" });
    expect(byName.get("h2load CPU: GetOrder warm (one id) gRPC vs grpc-js with the services' GC remedies and allocator")).toMatchObject({ system: 12_500, ceiling: 25_000, ratio: 0.5 });
    expect(byName.get(`h2load CPU: ${alternatedRemediedName} gRPC vs bare grpc-js`)).toMatchObject({ ratio: 1.5, note: "server CPU per call, 4 alternated rounds (median); transport alone, with the services' GC remedies and allocator" });
  });
});
