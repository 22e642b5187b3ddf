// The same in-memory service served by both transports (RpcServer with
// transport "grpc-js" and "connect"), called over gRPC (h2c): deadlines,
// metadata, validation details, errors, metrics and server-stream cancellation
// must be the same whichever transport serves the call.
import { create, toBinary } from "@bufbuild/protobuf";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { credentials, Metadata, makeGenericClientConstructor, type ServiceError } from "@grpc/grpc-js";
import { connect as http2Connect } from "node:http2";
import { register } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetOrderRequestSchema, GetOrderResponseSchema, OrderService, type CreateOrderRequest } from "../../../gen/orderflow/order/v1/order_pb.js";
import { createLogger } from "../logger.js";
import { bind } from "./binding.js";
import { HealthState } from "./health.js";
import { EncodedResponse, knownEncoding } from "./known-encoding.js";
import { RpcServer, type RpcTransport } from "./server.js";

const slowOrderId = "00000000-0000-4000-8000-000000000001";
const failingOrderId = "00000000-0000-4000-8000-000000000002";
const encodedOrderId = "00000000-0000-4000-8000-000000000003";
/** Keeps its context past the end of the call. */
const keptContextOrderId = "00000000-0000-4000-8000-000000000004";
/** A watch whose second read finds the database gone. */
const databaseGoneOrderId = "00000000-0000-4000-8000-000000000005";

interface Seen {
  timeoutMs?: number | undefined;
  abortReason?: unknown;
  watchEnded?: boolean;
  /** Whether the last response given as bytes went out without being decoded. */
  undecoded?: boolean;
  createCalls: number;
  keptContext?: HandlerContext;
}

/** A pure in-memory OrderService: no store, just what the transports must carry. */
function testService(seen: Seen) {
  return bind(OrderService, {
    async getOrder(request, context: HandlerContext) {
      if (request.orderId === slowOrderId) {
        seen.timeoutMs = context.timeoutMs();
        await new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve(), { once: true }));
        seen.abortReason = context.signal.reason;
        throw ConnectError.from(context.signal.reason);
      }
      if (request.orderId === failingOrderId) throw new Error("relation orders does not exist (a secret)");
      if (request.orderId === keptContextOrderId) {
        seen.keptContext = context;
        return { order: { orderId: request.orderId } };
      }
      if (request.orderId === encodedOrderId) {
        const bytes = toBinary(GetOrderResponseSchema, create(GetOrderResponseSchema, { order: { orderId: request.orderId, customerId: "from bytes" } }));
        const response = new EncodedResponse(GetOrderResponseSchema, bytes).answer(context);
        seen.undecoded = knownEncoding(response) !== undefined;
        return response;
      }
      context.responseHeader.set("x-echo", context.requestHeader.get("x-echo") ?? "");
      context.responseHeader.set("x-multi", context.requestHeader.get("x-multi") ?? "");
      context.responseHeader.set("x-bin-bin", context.requestHeader.get("x-bin-bin") ?? "");
      context.responseTrailer.set("x-trailer", "t1");
      context.responseTrailer.set("x-copied-request", context.requestHeader.get("x-copied-request") ?? "");
      context.responseTrailer.set("x-signal-aborted", String(context.signal.aborted));
      return { order: { orderId: request.orderId, customerId: context.requestHeader.get("x-customer") ?? "" } };
    },
    createOrder(_request: CreateOrderRequest) {
      seen.createCalls++;
      return { order: {} };
    },
    async *watchOrder(request, context) {
      yield { order: { orderId: request.orderId } };
      if (request.orderId === databaseGoneOrderId) throw Object.assign(new Error("Connection terminated unexpectedly"), { code: "ECONNRESET" });
      try {
        await new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve(), { once: true }));
      } finally {
        seen.watchEnded = true;
      }
    },
  });
}

async function countOf(method: string, code: string): Promise<number> {
  const metric = register.getSingleMetric("rpc_server_requests_total");
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.find((v) => v.labels["method"] === method && v.labels["code"] === code)?.value ?? 0;
}

async function until(check: () => boolean, timeoutMs = 2_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Raw grpc-js client call: what a plain gRPC client sees, including grpc-status-details-bin. */
function rawGrpcJs(port: number, method: string, request: Uint8Array): Promise<ServiceError> {
  const Client = makeGenericClientConstructor(
    { [method]: { path: `/orderflow.order.v1.OrderService/${method}`, requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } },
    "OrderService",
  );
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: Buffer, m: Metadata, cb: (e: ServiceError | null) => void) => void>)[method]!(Buffer.from(request), new Metadata(), (error) => {
      client.close();
      if (error) resolve(error);
      else reject(new Error("expected an error"));
    });
  });
}

/** A gRPC call over bare HTTP/2 that sends grpc-timeout and never cancels it itself; resolves with its grpc-status. */
function callWithoutClientTimer(port: number, path: string, request: Uint8Array, grpcTimeout: string): Promise<string | undefined> {
  const session = http2Connect(`http://127.0.0.1:${port}`);
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  Buffer.from(request).copy(frame, 5);
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", "grpc-timeout": grpcTimeout });
    let status: string | undefined;
    stream.on("response", (headers) => (status = headers["grpc-status"]?.toString() ?? status));
    stream.on("trailers", (trailers) => (status = trailers["grpc-status"]?.toString() ?? status));
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      resolve(status);
    });
    stream.resume();
    stream.end(frame);
  });
}

/** An interceptor that passes on a copy of the request with a header of its own, as interceptors may. */
const requestCopier: Interceptor = (next) => (req) => {
  if (req.stream || req.header.get("x-copy-request") === null) return next(req);
  const header = new Headers(req.header);
  header.set("x-copied-request", "yes");
  return next({ ...req, header });
};

const transports: RpcTransport[] = ["grpc-js", "connect"];
const servers = new Map<RpcTransport, { server: RpcServer; port: number; seen: Seen }>();

beforeAll(async () => {
  for (const transport of transports) {
    const seen: Seen = { createCalls: 0 };
    const health = new HealthState([OrderService.typeName], []);
    await health.start(60_000);
    const server = new RpcServer({ services: [testService(seen)], health, logger: createLogger("test", "error"), port: 0, host: "127.0.0.1", transport, interceptors: [requestCopier] });
    servers.set(transport, { server, port: await server.listen(), seen });
  }
});
afterAll(async () => {
  for (const { server } of servers.values()) await server.close(1_000);
});

const invalidCreate = { customerId: "", items: [{ sku: "", quantity: 0n }] };

describe.each(transports)("RpcServer over gRPC with transport %s", (transport) => {
  const get = () => servers.get(transport)!;
  const client = () => createClient(OrderService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${get().port}` }));

  it("propagates the deadline (grpc-timeout) into the handler context and answers DEADLINE_EXCEEDED", async () => {
    const error = await client()
      .getOrder({ orderId: slowOrderId }, { timeoutMs: 1_000 })
      .catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.DeadlineExceeded);
    await until(() => get().seen.abortReason !== undefined);
    // What is left of the caller's deadline when the handler starts: finite, and no more than
    // the caller gave (how much less depends on how busy the machine is).
    expect(get().seen.timeoutMs).toBeGreaterThan(0);
    expect(get().seen.timeoutMs).toBeLessThanOrEqual(1_000);
    // The client's own timer (RST_STREAM) and the server's deadline race: either ends the handler
    // (connect-node reports the client's reset as INTERNAL, grpc-js's deadline as DEADLINE_EXCEEDED).
    expect(get().seen.abortReason).toBeDefined();
  });

  it("aborts the handler's signal with DEADLINE_EXCEEDED when the deadline passes, with no cancel from the client", async () => {
    get().seen.abortReason = undefined;
    const request = toBinary(GetOrderRequestSchema, create(GetOrderRequestSchema, { orderId: slowOrderId }));
    const status = await callWithoutClientTimer(get().port, "/orderflow.order.v1.OrderService/GetOrder", request, "300m");
    expect(status).toBe(String(Code.DeadlineExceeded));
    await until(() => get().seen.abortReason !== undefined);
    expect(ConnectError.from(get().seen.abortReason).code).toBe(Code.DeadlineExceeded);
  });

  it("carries request metadata to the handler and its response headers and trailers back", async () => {
    let header: Headers | undefined;
    let trailer: Headers | undefined;
    const binary = Buffer.from([0, 1, 2, 250]).toString("base64");
    const res = await client().getOrder(
      { orderId: "00000000-0000-4000-8000-00000000000a" },
      { headers: [["x-echo", "hello"], ["x-customer", "alice"], ["x-bin-bin", binary], ["x-multi", "a"], ["x-multi", "b"]], onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) },
    );
    expect(res.order?.customerId).toBe("alice");
    expect(header?.get("x-echo")).toBe("hello");
    expect(header?.get("x-multi")).toBe("a, b");
    expect(Buffer.from(header?.get("x-bin-bin") ?? "", "base64")).toEqual(Buffer.from([0, 1, 2, 250]));
    expect(trailer?.get("x-trailer")).toBe("t1");
  });

  it("gives the handler the request an interceptor passed on as a copy, with the call's signal", async () => {
    let trailer: Headers | undefined;
    await client().getOrder({ orderId: "00000000-0000-4000-8000-00000000000a" }, { headers: [["x-copy-request", "1"]], onTrailer: (t) => (trailer = t) });
    expect(trailer?.get("x-copied-request")).toBe("yes");
    expect(trailer?.get("x-signal-aborted")).toBe("false");
  });

  it("aborts the signal of a context kept past the end of its call, whenever it is first asked for", async () => {
    get().seen.keptContext = undefined;
    await client().getOrder({ orderId: keptContextOrderId });
    const kept = get().seen.keptContext;
    await until(() => kept?.signal.aborted === true);
    // The call ended; the client cancelled nothing.
    expect(ConnectError.from(kept?.signal.reason).code).toBe(Code.Canceled);
    expect(ConnectError.from(kept?.signal.reason).message).not.toMatch(/client cancelled/);
  });

  it("rejects an invalid request with INVALID_ARGUMENT and buf.validate.Violations details, before the handler", async () => {
    const before = get().seen.createCalls;
    const error = await client()
      .createOrder(invalidCreate)
      .catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    const violations = (error as ConnectError).findDetails(ViolationsSchema)[0]?.violations ?? [];
    expect(violations.map((v) => v.field?.elements.map((e) => e.fieldName).join("."))).toEqual(expect.arrayContaining(["customer_id", "items.sku", "items.quantity"]));
    expect(get().seen.createCalls).toBe(before);
  });

  it("rejects a request with U+0000 in a string as INVALID_ARGUMENT with the field's path, before the handler", async () => {
    const calls = get().seen.createCalls;
    const error = await client()
      .createOrder({ customerId: "c1", items: [{ sku: "KB-001", quantity: 1n }, { sku: "KB\u0000", quantity: 1n }], idempotencyKey: "k\u0000" })
      .catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    const violations = (error as ConnectError).findDetails(ViolationsSchema)[0]?.violations ?? [];
    expect(violations.map((v) => [v.ruleId, v.field?.elements.map((e) => e.fieldName).join(".")])).toEqual([
      ["string.no_nul", "items.sku"],
      ["string.no_nul", "idempotency_key"],
    ]);
    expect(violations[0]?.field?.elements[0]?.subscript).toEqual({ case: "index", value: 1n });
    expect(get().seen.createCalls).toBe(calls);
  });

  it("maps errors that are not ConnectErrors to INTERNAL without internals, and counts them", async () => {
    const method = "orderflow.order.v1.OrderService/GetOrder";
    const before = await countOf(method, "internal");
    const error = await client()
      .getOrder({ orderId: failingOrderId })
      .catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.Internal);
    expect((error as ConnectError).rawMessage).toBe("internal error");
    expect(await countOf(method, "internal")).toBe(before + 1);
  });

  it("sends a response given as bytes: as it is through grpc-js, decoded and encoded again through connect-node", async () => {
    const res = await client().getOrder({ orderId: encodedOrderId });
    expect(res.order).toMatchObject({ orderId: encodedOrderId, customerId: "from bytes" });
    expect(get().seen.undecoded).toBe(transport === "grpc-js");
  });

  it("maps a server stream's error as a unary call's: a connection failure is UNAVAILABLE, and counted", async () => {
    const method = "orderflow.order.v1.OrderService/WatchOrder";
    const before = await countOf(method, "unavailable");
    const seen: string[] = [];
    const error = await (async () => {
      for await (const { order } of client().watchOrder({ orderId: databaseGoneOrderId })) seen.push(order?.orderId ?? "");
    })().catch((e: unknown) => ConnectError.from(e));
    expect(seen).toEqual([databaseGoneOrderId]);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unavailable);
    expect((error as ConnectError).rawMessage).toBe("a dependency is unavailable, retry later");
    expect(await countOf(method, "unavailable")).toBe(before + 1);
  });

  it("ends a server stream's handler when the client cancels", async () => {
    get().seen.watchEnded = false;
    const abort = new AbortController();
    const stream = client().watchOrder({ orderId: "00000000-0000-4000-8000-00000000000b" }, { signal: abort.signal });
    const first = await stream[Symbol.asyncIterator]().next();
    expect(first.value?.order?.orderId).toBe("00000000-0000-4000-8000-00000000000b");
    abort.abort();
    await until(() => get().seen.watchEnded === true);
  });

  it("answers server reflection v1 and v1alpha (bidi streams)", async () => {
    const baseUrl = `http://127.0.0.1:${get().port}`;
    for (const version of [await import("../../../gen/grpc/reflection/v1/reflection_pb.js"), await import("../../../gen/grpc/reflection/v1alpha/reflection_pb.js")]) {
      const reflection = createClient(version.ServerReflection as typeof import("../../../gen/grpc/reflection/v1/reflection_pb.js").ServerReflection, createGrpcTransport({ baseUrl }));
      const names: string[] = [];
      const files: number[] = [];
      async function* requests() {
        yield { messageRequest: { case: "listServices" as const, value: "" } };
        yield { messageRequest: { case: "fileContainingSymbol" as const, value: "orderflow.order.v1.OrderService" } };
      }
      for await (const answer of reflection.serverReflectionInfo(requests())) {
        if (answer.messageResponse.case === "listServicesResponse") names.push(...answer.messageResponse.value.service.map((s) => s.name));
        if (answer.messageResponse.case === "fileDescriptorResponse") files.push(answer.messageResponse.value.fileDescriptorProto.length);
      }
      expect(names).toEqual(expect.arrayContaining([OrderService.typeName, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]));
      expect(files[0]).toBeGreaterThan(1);
    }
  });

  it("serves Health/Check and Health/Watch", async () => {
    const health = createClient((await import("../../../gen/grpc/health/v1/health_pb.js")).Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${get().port}` }));
    expect((await health.check({ service: OrderService.typeName })).status).toBe(1);
    const error = await health.check({ service: "nope" }).catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.NotFound);
    const abort = new AbortController();
    const watch = health.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.status).toBe(1);
    abort.abort();
  });
});

describe("both transports", () => {
  it("send byte-identical errors: status, message and grpc-status-details-bin", async () => {
    const { toBinary } = await import("@bufbuild/protobuf");
    const { CreateOrderRequestSchema } = await import("../../../gen/orderflow/order/v1/order_pb.js");
    const request = toBinary(CreateOrderRequestSchema, create(CreateOrderRequestSchema, invalidCreate));
    const [viaGrpcJs, viaConnect] = await Promise.all(transports.map((t) => rawGrpcJs(servers.get(t)!.port, "CreateOrder", request)));
    expect(viaGrpcJs!.code).toBe(viaConnect!.code);
    // connect-node percent-encodes grpc-message with encodeURIComponent; grpc-js clients decode
    // with decodeURI, so through connect-node they see "%3A" and "%2C" — grpc-js sends the plain text.
    expect(viaGrpcJs!.details).toBe(decodeURIComponent(viaConnect!.details));
    const details = (e: ServiceError) => e.metadata.get("grpc-status-details-bin")[0];
    expect(details(viaGrpcJs!)).toBeInstanceOf(Buffer);
    expect(details(viaGrpcJs!)).toEqual(details(viaConnect!));

    const empty = toBinary(GetOrderRequestSchema, create(GetOrderRequestSchema, { orderId: "not-a-uuid" }));
    const [a, b] = await Promise.all(transports.map((t) => rawGrpcJs(servers.get(t)!.port, "GetOrder", empty)));
    expect([a!.code, a!.details, details(a!)]).toEqual([b!.code, decodeURIComponent(b!.details), details(b!)]);
  });
});
