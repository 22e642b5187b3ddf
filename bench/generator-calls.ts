import { performance } from "node:perf_hooks";
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { status as grpcStatus } from "@grpc/grpc-js";
import { CreateOrderRequestSchema } from "../gen/orderflow/order/v1/order_pb.js";
import type { ErrorSample } from "./protocol.js";
import { round } from "./stats.js";

/** A message's binary encoding (gRPC calls take and give bytes: see grpc-wire.ts). */
export function encode<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Uint8Array {
  return toBinary(schema, create(schema, init));
}

/** A stable name for a failure: the gRPC / Connect code, or the error's message. */
export function errorName(error: unknown): string {
  if (error instanceof ConnectError) return Code[error.code] ?? String(error.code);
  if (typeof error === "object" && error !== null && typeof (error as { code?: unknown }).code === "number") {
    const code = (error as { code: number }).code;
    return grpcStatus[code] ?? String(code);
  }
  return error instanceof Error ? error.message.slice(0, 80) : String(error).slice(0, 80);
}

export function tally(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** Samples kept per code: enough to tell the causes apart, few enough for a flood of refusals. */
const samplesPerCode = 5;

/** Keeps the first failures of each code, with their messages, so that a count of errors can be explained. */
export function sampleError(samples: ErrorSample[], code: string, error: unknown, atMs: number): void {
  if (samples.filter((s) => s.code === code).length >= samplesPerCode) return;
  const message = error instanceof ConnectError ? error.rawMessage : error instanceof Error ? error.message : String(error);
  samples.push({ code, message: message.slice(0, 200), atMs: round(atMs, 0) });
}

/** The generator's own CPU since `startCpu`, as a percentage of one core. */
export function cpuPercent(startCpu: NodeJS.CpuUsage, startedAt: number): number {
  const used = process.cpuUsage(startCpu);
  const elapsedMs = performance.now() - startedAt;
  return elapsedMs > 100 ? round(((used.user + used.system) / 1000 / elapsedMs) * 100, 1) : 0;
}


/** CreateOrder requests of the run's customers, each with an idempotency key of its own. */
export class OrderRequests {
  private seq = 0;

  constructor(
    readonly customers: readonly string[],
    private readonly skus: readonly string[],
    private readonly runId: string,
  ) {}

  /** The next request, encoded: the customers in turn, a product at random, one unit. */
  next(): Uint8Array {
    const seq = ++this.seq;
    const customerId = this.customers[seq % this.customers.length] ?? "bench-0";
    const sku = this.skus[Math.floor(Math.random() * this.skus.length)] ?? "BENCH-1";
    return encode(CreateOrderRequestSchema, { customerId, items: [{ sku, quantity: 1n }], idempotencyKey: `${this.runId}-${seq}` });
  }
}
