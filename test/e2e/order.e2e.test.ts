// The order service end to end (issue: foundation): order and inventory run as
// their own processes; each behaviour is checked through buf curl (gRPC, schema
// by reflection), @grpc/grpc-js and HTTP/1.1 JSON (the Connect protocol).
import { fromBinary } from "@bufbuild/protobuf";
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { OrderService, OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { bufCurl, bufCurlGrpc, grpcJsClient, postJson } from "../support/clients.js";
import { bytesOf, protoFields } from "../support/protobuf-fields.js";
import { useSystem } from "../support/system.js";

// Every behaviour is checked with gRPC served by @grpc/grpc-js (the default) and by connect-node.
const transports = ["grpc-js", "connect"] as const;
const method = (name: string) => `/orderflow.order.v1.OrderService/${name}`;

interface JsonOrder {
  orderId: string;
  customerId: string;
  status: string;
  total: { amountMinor: string; currency: string };
  items: Array<{ sku: string; quantity: string; unitPrice: { amountMinor: string } }>;
  history?: Array<{ toStatus: string; reason: string }>;
}

interface JsonError {
  code: string;
  message: string;
  details?: Array<{ type: string; value?: string; debug?: { violations: Array<{ ruleId: string; field: { elements: Array<{ fieldName: string; index?: string }> } }> } }>;
}

/** Violated fields of a grpc-js error, decoded from grpc-status-details-bin. */
function grpcViolations(error: ServiceError): string[] {
  const raw = error.metadata.get("grpc-status-details-bin")[0];
  if (!(raw instanceof Buffer)) return [];
  // google.rpc.Status: field 3 holds Any details; decode the Any's value as Violations.
  const details = decodeStatusDetails(raw);
  return details.flatMap((bytes) => fromBinary(ViolationsSchema, bytes).violations.map((v) => v.field?.elements.map((e) => (e.subscript.case === "index" ? `${e.fieldName}[${e.subscript.value}]` : e.fieldName)).join(".") ?? ""));
}

/** google.rpc.Status { repeated Any details = 3 } → each Any's value (field 2). */
function decodeStatusDetails(buf: Buffer): Buffer[] {
  return bytesOf(protoFields(buf), 3).flatMap((any) => bytesOf(protoFields(any), 2).map((value) => Buffer.from(value)));
}

describe.each(transports)("order end to end (RPC_TRANSPORT=%s)", (transport) => {
  const system = useSystem({ services: ["inventory", "order"], env: { RPC_TRANSPORT: transport } });

  it("is SERVING and lists OrderService through reflection", async () => {
    expect(await bufCurlGrpc(system().url("order"), "grpc.health.v1.Health/Check", { service: "orderflow.order.v1.OrderService" })).toEqual({ status: "SERVING" });
    const services = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", "--list-services", system().url("order")]);
    expect(services.stdout.split("\n")).toEqual(expect.arrayContaining(["orderflow.order.v1.OrderService", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]));
  });

  it("CreateOrder → GetOrder round trip, priced by inventory, through all three clients", async () => {
    const created = (await bufCurlGrpc(system().url("order"), "orderflow.order.v1.OrderService/CreateOrder", {
      customerId: "e2e-alice",
      items: [{ sku: "KB-001", quantity: 2 }, { sku: "MS-002", quantity: 1 }],
    })) as { order: JsonOrder };
    expect(created.order.status).toBe("ORDER_STATUS_PENDING");
    expect(created.order.total).toEqual({ amountMinor: "20700", currency: "USD" });
    expect(created.order.items.map((i) => [i.sku, i.quantity, i.unitPrice.amountMinor])).toEqual([["KB-001", "2", "8900"], ["MS-002", "1", "2900"]]);

    const viaHttp = await postJson(system().url("order"), method("GetOrder"), { orderId: created.order.orderId });
    expect(viaHttp.httpVersion).toBe("1.1");
    expect(viaHttp.status).toBe(200);
    const httpOrder = (viaHttp.json as { order: JsonOrder }).order;
    expect(httpOrder.orderId).toBe(created.order.orderId);
    expect(httpOrder.total).toEqual(created.order.total);
    expect(httpOrder.history?.[0]).toMatchObject({ toStatus: "ORDER_STATUS_PENDING", reason: "order placed" });

    const grpc = grpcJsClient(OrderService, system().address("order"));
    const viaGrpcJs = await grpc.unary(OrderService.method.getOrder, { orderId: created.order.orderId }).finally(() => grpc.close());
    expect(viaGrpcJs.order?.customerId).toBe("e2e-alice");
    expect(viaGrpcJs.order?.total?.amountMinor).toBe(20700n);
  });

  it("an idempotent retry returns the same order; the same key for another order is ALREADY_EXISTS", async () => {
    const request = { customerId: "e2e-bob", items: [{ sku: "CB-005", quantity: 3 }], idempotencyKey: "retry-1" };
    const first = await postJson(system().url("order"), method("CreateOrder"), request);
    const again = await postJson(system().url("order"), method("CreateOrder"), request);
    expect(first.status).toBe(200);
    expect((again.json as { order: JsonOrder }).order.orderId).toBe((first.json as { order: JsonOrder }).order.orderId);

    const grpc = grpcJsClient(OrderService, system().address("order"));
    try {
      const viaGrpcJs = await grpc.unary(OrderService.method.createOrder, { ...request, items: [{ sku: "CB-005", quantity: 3n }] });
      expect(viaGrpcJs.order?.orderId).toBe((first.json as { order: JsonOrder }).order.orderId);
      const conflict = await grpc.unary(OrderService.method.createOrder, { ...request, items: [{ sku: "CB-005", quantity: 4n }] }).catch((e: ServiceError) => e);
      expect((conflict as ServiceError).code).toBe(GrpcStatus.ALREADY_EXISTS);
    } finally {
      grpc.close();
    }
    const orders = await postJson(system().url("order"), method("ListOrders"), { customerId: "e2e-bob" });
    expect((orders.json as { orders: JsonOrder[] }).orders).toHaveLength(1);
  });

  it("concurrent CreateOrders (inserted together): a repeated key shares one order, a changed request under it is ALREADY_EXISTS", async () => {
    const grpc = grpcJsClient(OrderService, system().address("order"));
    try {
      const customerId = "e2e-burst";
      const place = (key: string, quantity: bigint) =>
        grpc.unary(OrderService.method.createOrder, { customerId, idempotencyKey: key, items: [{ sku: "CB-005", quantity }, { sku: "LS-008", quantity: 1n }] }).catch((e: ServiceError) => e);
      // 12 distinct keys, each sent twice, plus a different request under key-0, all at once.
      const calls = [...Array.from({ length: 12 }, (_, i) => place(`key-${i}`, BigInt(i + 1))), ...Array.from({ length: 12 }, (_, i) => place(`key-${i}`, BigInt(i + 1))), place("key-0", 99n)];
      const results = await Promise.all(calls);
      const conflict = results[24] as ServiceError;
      expect(conflict.code).toBe(GrpcStatus.ALREADY_EXISTS);
      for (let i = 0; i < 12; i++) {
        const first = results[i] as { order?: { orderId: string; items: { sku: string; quantity: bigint }[] } };
        const repeat = results[12 + i] as { order?: { orderId: string } };
        expect(first.order?.orderId).toBeDefined();
        expect(repeat.order?.orderId).toBe(first.order?.orderId);
        expect(first.order?.items.map((item) => [item.sku, item.quantity])).toEqual([["CB-005", BigInt(i + 1)], ["LS-008", 1n]]);
        const stored = await grpc.unary(OrderService.method.getOrder, { orderId: first.order!.orderId });
        expect(stored.order?.items.map((item) => item.quantity)).toEqual([BigInt(i + 1), 1n]);
      }
      const listed = await grpc.unary(OrderService.method.listOrders, { customerId, pageSize: 50 });
      expect(listed.orders).toHaveLength(12);
    } finally {
      grpc.close();
    }
  });

  it("ListOrders pages newest first with tokens and filters by status", async () => {
    const customerId = "e2e-pager";
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await postJson(system().url("order"), method("CreateOrder"), { customerId, items: [{ sku: "LS-008", quantity: i + 1 }] });
      ids.push((res.json as { order: JsonOrder }).order.orderId);
    }
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = (await bufCurlGrpc(system().url("order"), "orderflow.order.v1.OrderService/ListOrders", { customerId, pageSize: 2, pageToken })) as { orders: JsonOrder[]; nextPageToken?: string };
      seen.push(...page.orders.map((o) => o.orderId));
      pageToken = page.nextPageToken ?? "";
      pages++;
    } while (pageToken);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse());

    const grpc = grpcJsClient(OrderService, system().address("order"));
    try {
      const pending = await grpc.unary(OrderService.method.listOrders, { customerId, statuses: [OrderStatus.PENDING, OrderStatus.REJECTED, OrderStatus.FRAUD_APPROVED], pageSize: 100 });
      const confirmed = await grpc.unary(OrderService.method.listOrders, { customerId, statuses: [OrderStatus.CONFIRMED] });
      expect(pending.orders.length + confirmed.orders.length).toBeLessThanOrEqual(5);
      for (const order of confirmed.orders) expect(order.status).toBe(OrderStatus.CONFIRMED);
    } finally {
      grpc.close();
    }
    const bad = await postJson(system().url("order"), method("ListOrders"), { customerId, pageToken: "not-a-token" });
    expect(bad.json).toMatchObject({ code: "invalid_argument" });
  });

  it("an unknown SKU is NOT_FOUND with the item's field path, and nothing is written", async () => {
    const customerId = "e2e-unknown";
    const viaHttp = await postJson(system().url("order"), method("CreateOrder"), { customerId, items: [{ sku: "KB-001", quantity: 1 }, { sku: "NO-SUCH", quantity: 1 }] });
    expect(viaHttp.status).toBe(404);
    const error = viaHttp.json as JsonError;
    expect(error.code).toBe("not_found");
    expect(error.message).toContain("NO-SUCH");
    expect(error.details?.[0]?.type).toBe("buf.validate.Violations");
    expect(error.details?.[0]?.debug?.violations[0]?.field.elements.map((e) => e.fieldName)).toEqual(["items", "sku"]);
    expect(error.details?.[0]?.debug?.violations[0]?.field.elements[0]?.index).toBe("1");

    const viaBuf = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", "-d", JSON.stringify({ customerId, items: [{ sku: "NO-SUCH", quantity: 1 }] }), `${system().url("order")}${method("CreateOrder")}`]);
    expect(viaBuf.code).not.toBe(0);
    expect(viaBuf.stderr + viaBuf.stdout).toContain("not_found");

    const list = await postJson(system().url("order"), method("ListOrders"), { customerId });
    expect((list.json as { orders?: JsonOrder[] }).orders ?? []).toHaveLength(0);
  });

  it("invalid fields are INVALID_ARGUMENT with every violation in the details, and nothing is written", async () => {
    const customerId = "e2e-invalid";
    const invalid = { customerId, items: [{ sku: "KB-001", quantity: 0 }, { sku: "", quantity: 5000 }] };
    const viaHttp = await postJson(system().url("order"), method("CreateOrder"), invalid);
    expect(viaHttp.status).toBe(400);
    const error = viaHttp.json as JsonError;
    expect(error.code).toBe("invalid_argument");
    const fields = error.details?.[0]?.debug?.violations.map((v) => v.field.elements.map((e) => (e.index ? `${e.fieldName}[${e.index}]` : e.fieldName)).join("."));
    expect(fields).toEqual(expect.arrayContaining(["items[0].quantity", "items[1].sku", "items[1].quantity"]));

    const grpc = grpcJsClient(OrderService, system().address("order"));
    try {
      const viaGrpcJs = (await grpc.unary(OrderService.method.createOrder, { customerId: "", items: [] }).catch((e: ServiceError) => e)) as ServiceError;
      expect(viaGrpcJs.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(grpcViolations(viaGrpcJs)).toEqual(expect.arrayContaining(["customer_id", "items"]));
      const badId = (await grpc.unary(OrderService.method.getOrder, { orderId: "42" }).catch((e: ServiceError) => e)) as ServiceError;
      expect(badId.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      const missing = (await grpc.unary(OrderService.method.getOrder, { orderId: "7f1c9a52-5a4b-4a61-9c54-8a0d8f1f2e3d" }).catch((e: ServiceError) => e)) as ServiceError;
      expect(missing.code).toBe(GrpcStatus.NOT_FOUND);
    } finally {
      grpc.close();
    }
    const list = await postJson(system().url("order"), method("ListOrders"), { customerId });
    expect((list.json as { orders?: JsonOrder[] }).orders ?? []).toHaveLength(0);
  });

  it("WatchOrder streams the order over gRPC and ends the server side when the client cancels", async () => {
    const created = await postJson(system().url("order"), method("CreateOrder"), { customerId: "e2e-watcher", items: [{ sku: "KB-001", quantity: 1 }] });
    const orderId = (created.json as { order: JsonOrder }).order.orderId;
    const grpc = grpcJsClient(OrderService, system().address("order"));
    try {
      const stream = grpc.serverStream(OrderService.method.watchOrder, { orderId }, { metadata: { "x-request-id": "e2e-watch" } });
      const first = await stream[Symbol.asyncIterator]().next();
      expect(first.value?.order?.orderId).toBe(orderId);
      stream.cancel();
      const unknown = grpc.serverStream(OrderService.method.watchOrder, { orderId: "7f1c9a52-5a4b-4a61-9c54-8a0d8f1f2e3d" });
      const error = (await unknown[Symbol.asyncIterator]().next().catch((e: ServiceError) => e)) as ServiceError;
      expect(error.code).toBe(GrpcStatus.NOT_FOUND);
    } finally {
      grpc.close();
    }
    // The server is still healthy and serving after the cancelled stream.
    expect(await bufCurlGrpc(system().url("order"), "grpc.health.v1.Health/Check", { service: "orderflow.order.v1.OrderService" })).toEqual({ status: "SERVING" });
  });
});

describe("order end to end with the per-customer limit at 2 a minute", () => {
  const system = useSystem({ services: ["inventory", "order"], env: { ORDER_RATE_LIMIT_PER_MINUTE: "2" } });

  it("refuses a third order in the minute, but answers a retry of an earlier one with its order", async () => {
    const create = (key: string, quantity = 1) => postJson(system().url("order"), method("CreateOrder"), { customerId: "e2e-limited", items: [{ sku: "KB-001", quantity }], idempotencyKey: key });
    // The limit counts per minute of the clock: the three calls must not straddle a new one.
    const leftInMinute = 60_000 - (Date.now() % 60_000);
    if (leftInMinute < 20_000) await new Promise((resolve) => setTimeout(resolve, leftInMinute + 100));
    const first = (await create("limited-1")).json as { order: JsonOrder };
    expect((await create("limited-2")).status).toBe(200);
    const third = await create("limited-3");
    expect((third.json as JsonError).code).toBe("resource_exhausted");
    // The client lost the first answer and retries: the order it made, not a refusal.
    const retried = await create("limited-1");
    expect(retried.status).toBe(200);
    expect((retried.json as { order: JsonOrder }).order.orderId).toBe(first.order.orderId);
    // The same key for another order is still a conflict.
    expect(((await create("limited-1", 2)).json as JsonError).code).toBe("already_exists");
    const listed = await postJson(system().url("order"), method("ListOrders"), { customerId: "e2e-limited" });
    expect((listed.json as { orders: JsonOrder[] }).orders).toHaveLength(2);
  }, 60_000);
});

describe("order end to end with at most 2 orders in progress", () => {
  const system = useSystem({ services: ["inventory", "order", "fraud", "payment"], env: { SAGA_MAX_ORDERS_IN_PROGRESS: "2" } });

  it("refuses a third order with RESOURCE_EXHAUSTED (HTTP 429, and over gRPC), writing nothing, even a retry's lookup; bad input is still INVALID_ARGUMENT; orders that conclude make room", async () => {
    // Without fraud's answers alice's orders (stock reserved, money charged) stay in progress.
    await system().system.stopService("fraud");
    const create = (key: string, quantity = 1) => postJson(system().url("order"), method("CreateOrder"), { customerId: "alice", items: [{ sku: "KB-001", quantity }], idempotencyKey: key });
    const first = (await create("busy-1")).json as { order: JsonOrder };
    expect(first.order.status).toBe("ORDER_STATUS_PENDING");
    expect((await create("busy-2")).status).toBe(200);

    const third = await create("busy-3");
    expect(third.status).toBe(429);
    expect(third.json).toMatchObject({ code: "resource_exhausted", message: expect.stringContaining("the most this system takes at once (2)") });
    const retryInfo = (third.json as JsonError).details?.find((d) => d.type === "google.rpc.RetryInfo");
    expect(fromBinary(RetryInfoSchema, Buffer.from(retryInfo?.value ?? "", "base64")).retryDelay?.seconds).toBe(1n);
    const grpc = grpcJsClient(OrderService, system().address("order"));
    const overGrpc = await grpc
      .unary(OrderService.method.createOrder, { customerId: "alice", items: [{ sku: "KB-001", quantity: 1n }] })
      .catch((e: ServiceError) => e)
      .finally(() => grpc.close());
    expect((overGrpc as ServiceError).code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    const grpcDetails = decodeStatusDetails((overGrpc as ServiceError).metadata.get("grpc-status-details-bin")[0] as Buffer);
    expect(grpcDetails.map((bytes) => fromBinary(RetryInfoSchema, bytes).retryDelay?.seconds)).toEqual([1n]);
    // A retry of the first is refused too, and makes nothing.
    expect((await create("busy-1")).status).toBe(429);
    // Bad input is still told apart from a full system.
    expect(((await create("busy-4", 0)).json as JsonError).code).toBe("invalid_argument");
    const listOrders = async () => ((await postJson(system().url("order"), method("ListOrders"), { customerId: "alice" })).json as { orders: JsonOrder[] }).orders;
    expect(await listOrders()).toHaveLength(2);

    // Fraud answers, the two orders conclude, and the next count (every 250 ms) makes room.
    await system().system.restart("fraud");
    await expect.poll(async () => (await listOrders()).map((o) => o.status), { timeout: 20_000 }).toEqual(["ORDER_STATUS_CONFIRMED", "ORDER_STATUS_CONFIRMED"]);
    await expect.poll(async () => (await create("busy-3")).status, { timeout: 5_000 }).toBe(200);
    // An order written while a count runs may be counted twice until the next count (the safe side): poll.
    await expect.poll(async () => (await create("busy-1")).json as { order?: JsonOrder }, { timeout: 5_000 }).toHaveProperty("order.orderId", first.order.orderId);
    expect(await listOrders()).toHaveLength(3);
  });
});
