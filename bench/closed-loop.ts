import { performance } from "node:perf_hooks";
import { fromBinary } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema } from "../gen/grpc/health/v1/health_pb.js";
import {
  CreateOrderRequestSchema,
  CreateOrderResponseSchema,
  GetOrderRequestSchema,
  GetOrderResponseSchema,
  ListOrdersRequestSchema,
  ListOrdersResponseSchema,
  OrderService,
} from "../gen/orderflow/order/v1/order_pb.js";
import { cpuPercent, encode, errorName, type OrderRequests, tally } from "./generator-calls.js";
import { GrpcWireClient } from "./grpc-wire.js";
import { sleep } from "./log.js";
import type { UnaryJob, UnaryResult } from "./protocol.js";
import { round, Samples } from "./stats.js";

type Caller = () => Promise<void>;

function unaryCaller(job: UnaryJob, requests: OrderRequests, nextId: () => string | undefined): { call: Caller; close(): void } {
  const workload = job.workload;
  const customers = requests.customers;
  let listIndex = 0;
  if (job.protocol === "grpc") {
    const client = new GrpcWireClient(job.address);
    const call = async (): Promise<void> => {
      switch (workload.call) {
        case "health": {
          const bytes = await client.call("/grpc.health.v1.Health/Check", encode(HealthCheckRequestSchema, { service: workload.service }));
          fromBinary(HealthCheckResponseSchema, bytes);
          return;
        }
        case "getOrder": {
          const orderId = nextId();
          if (orderId === undefined) throw new Exhausted();
          fromBinary(GetOrderResponseSchema, await client.call("/orderflow.order.v1.OrderService/GetOrder", encode(GetOrderRequestSchema, { orderId })));
          return;
        }
        case "listOrders": {
          const customerId = customers[listIndex++ % customers.length] ?? "bench-0";
          const body = encode(ListOrdersRequestSchema, { customerId, pageSize: workload.pageSize });
          fromBinary(ListOrdersResponseSchema, await client.call("/orderflow.order.v1.OrderService/ListOrders", body));
          return;
        }
        case "createOrder":
          fromBinary(CreateOrderResponseSchema, await client.call("/orderflow.order.v1.OrderService/CreateOrder", requests.next()));
          return;
      }
    };
    return { call, close: () => client.close() };
  }
  // Connect protocol over HTTP/1.1 with JSON, as a browser or curl would call it.
  const transport = createConnectTransport({ baseUrl: job.url, httpVersion: "1.1" });
  const health: Client<typeof Health> = createClient(Health, transport);
  const orders: Client<typeof OrderService> = createClient(OrderService, transport);
  const call = async (): Promise<void> => {
    switch (workload.call) {
      case "health":
        await health.check({ service: workload.service });
        return;
      case "getOrder": {
        const orderId = nextId();
        if (orderId === undefined) throw new Exhausted();
        await orders.getOrder({ orderId });
        return;
      }
      case "listOrders":
        await orders.listOrders({ customerId: customers[listIndex++ % customers.length] ?? "bench-0", pageSize: workload.pageSize });
        return;
      case "createOrder": {
        const request = fromBinary(CreateOrderRequestSchema, requests.next());
        await orders.createOrder(request);
        return;
      }
    }
  };
  return { call, close: () => undefined };
}

class Exhausted extends Error {}

/**
 * A closed loop of unary calls: `concurrency` callers, each making its next call when its last
 * one has answered, for the job's duration (or until a list of ids to use once runs out).
 */
export async function unary(job: UnaryJob, requests: OrderRequests): Promise<UnaryResult> {
  const workload = job.workload;
  let idIndex = 0;
  const nextId = (): string | undefined => {
    if (workload.call !== "getOrder" || workload.ids.length === 0) return undefined;
    if (workload.once) return workload.ids[idIndex++];
    return workload.ids[idIndex++ % workload.ids.length];
  };
  const { call, close } = unaryCaller(job, requests, nextId);
  const latency = new Samples(1 << 16);
  const errors: Record<string, number> = {};
  // Each loop adds to the shared counters only after its own await has returned:
  // no read-before-await, so no increment is lost.
  const counts = { ok: 0 };
  let exhausted = false;
  // Calls that open the connections, not measured; then the job's warm-up time (JIT).
  // A warm GetOrder run first reads each of its ids once, which puts them in the cache.
  if (workload.call === "getOrder") {
    if (!workload.once) for (let i = 0; i < workload.ids.length; i++) await call().catch(() => undefined);
    idIndex = 0;
  } else {
    await Promise.allSettled(Array.from({ length: Math.min(job.concurrency, 4) }, () => call()));
  }
  const loop = async (end: number, measured: boolean): Promise<void> => {
    while (!exhausted && performance.now() < end) {
      const started = performance.now();
      try {
        await call();
        if (!measured) continue;
        latency.add(performance.now() - started);
        counts.ok += 1;
      } catch (error) {
        if (error instanceof Exhausted) {
          exhausted = true;
          return;
        }
        if (measured) tally(errors, errorName(error));
        // Do not spin on a dead endpoint.
        await sleep(1);
      }
    }
  };
  const loops = (end: number, measured: boolean) => Promise.all(Array.from({ length: job.concurrency }, () => loop(end, measured)));
  if (job.warmupMs > 0) await loops(performance.now() + job.warmupMs, false);
  const startCpu = process.cpuUsage();
  const t0 = performance.now();
  await loops(t0 + job.durationMs, true);
  const elapsed = performance.now() - t0;
  const cpu = cpuPercent(startCpu, t0);
  close();
  return {
    kind: "unary",
    name: job.name,
    protocol: job.protocol,
    concurrency: job.concurrency,
    durationMs: round(elapsed, 0),
    requests: counts.ok,
    errors,
    perSec: round(counts.ok / (elapsed / 1_000), 1),
    latency: latency.summary(),
    exhausted,
    generatorCpuPercent: cpu,
  };
}

