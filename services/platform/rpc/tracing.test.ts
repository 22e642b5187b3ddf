// The tracing interceptor on both transports: the caller's traceparent is
// continued in a SERVER span, and the handler runs inside it.
import { trace, SpanKind } from "@opentelemetry/api";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { OrderService } from "../../../gen/orderflow/order/v1/order_pb.js";
import { createLogger } from "../logger.js";
import { bind } from "./binding.js";
import { HealthState } from "./health.js";
import { RpcServer, type RpcTransport } from "./server.js";

const exporter = new InMemorySpanExporter();
const sdk = new NodeSDK({ serviceName: "tracing-test", spanProcessors: [new SimpleSpanProcessor({ exporter })], instrumentations: [] });
const seenTraceIds: string[] = [];
const service = bind(OrderService, {
  getOrder(request) {
    seenTraceIds.push(trace.getActiveSpan()?.spanContext().traceId ?? "");
    return { order: { orderId: request.orderId } };
  },
});

const transports: RpcTransport[] = ["grpc-js", "connect"];
const servers = new Map<RpcTransport, { server: RpcServer; port: number }>();

beforeAll(async () => {
  sdk.start();
  for (const transport of transports) {
    const server = new RpcServer({ services: [service], health: new HealthState([], []), logger: createLogger("test", "error"), port: 0, host: "127.0.0.1", transport });
    servers.set(transport, { server, port: await server.listen() });
  }
});
afterAll(async () => {
  for (const { server } of servers.values()) await server.close(1_000);
  await sdk.shutdown();
});

describe.each(transports)("tracing with transport %s", (transport) => {
  it("continues the caller's trace in a SERVER span around the handler", async () => {
    const traceId = transport === "grpc-js" ? "0af7651916cd43dd8448eb211c80319c" : "1bf7651916cd43dd8448eb211c80319d";
    const parentSpanId = "b7ad6b7169203331";
    const client = createClient(OrderService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${servers.get(transport)!.port}` }));
    await client.getOrder({ orderId: "00000000-0000-4000-8000-000000000001" }, { headers: { traceparent: `00-${traceId}-${parentSpanId}-01` } });
    expect(seenTraceIds.at(-1)).toBe(traceId);
    // The span reaches the exporter asynchronously (SimpleSpanProcessor), possibly after the client has read the answer.
    const span = await vi.waitFor(() => {
      const finished = exporter.getFinishedSpans().find((s) => s.spanContext().traceId === traceId);
      if (!finished) throw new Error("the server span has not ended yet");
      return finished;
    }, 2_000);
    expect(span?.name).toBe("orderflow.order.v1.OrderService/GetOrder");
    expect(span?.kind).toBe(SpanKind.SERVER);
    expect(span?.parentSpanContext?.spanId).toBe(parentSpanId);
    expect(span?.attributes["rpc.method"]).toBe("GetOrder");
  });
});
