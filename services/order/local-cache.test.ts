import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { OrderSchema, OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { LocalOrderCache } from "./local-cache.js";

const order = (orderId: string, status: OrderStatus, version: bigint) => create(OrderSchema, { orderId, status, version });

describe("LocalOrderCache", () => {
  it("keeps terminal orders only", () => {
    const cache = new LocalOrderCache(10, 60_000);
    cache.offer(order("a", OrderStatus.STOCK_RESERVED, 3n), performance.now());
    expect(cache.get("a")).toBeUndefined();
    cache.offer(order("a", OrderStatus.CONFIRMED, 4n), performance.now());
    expect(cache.get("a")?.version).toBe(4n);
  });

  it("drops an order on its change notice and refuses a read that started before it", () => {
    const cache = new LocalOrderCache(10, 60_000);
    cache.offer(order("a", OrderStatus.CONFIRMED, 4n), performance.now());
    const slowRead = performance.now();
    cache.changed("a"); // e.g. another replica cancelled it
    expect(cache.get("a")).toBeUndefined();
    cache.offer(order("a", OrderStatus.CONFIRMED, 4n), slowRead);
    expect(cache.get("a")).toBeUndefined();
    cache.offer(order("a", OrderStatus.CANCELLED, 6n), performance.now());
    expect(cache.get("a")?.status).toBe(OrderStatus.CANCELLED);
  });

  it("serves and stores nothing while deaf, and refuses reads from then once listening again", () => {
    const cache = new LocalOrderCache(10, 60_000);
    cache.offer(order("a", OrderStatus.CONFIRMED, 4n), performance.now());
    cache.deaf();
    expect(cache.get("a")).toBeUndefined();
    const readWhileDeaf = performance.now();
    cache.offer(order("b", OrderStatus.CONFIRMED, 4n), readWhileDeaf);
    cache.listening();
    cache.offer(order("b", OrderStatus.CONFIRMED, 4n), readWhileDeaf);
    expect(cache.get("b")).toBeUndefined();
    cache.offer(order("b", OrderStatus.CONFIRMED, 4n), performance.now());
    expect(cache.get("b")?.version).toBe(4n);
  });

  it("expires copies after its ttl and holds at most max", async () => {
    const cache = new LocalOrderCache(2, 50);
    for (const id of ["a", "b", "c"]) cache.offer(order(id, OrderStatus.REJECTED, 2n), performance.now());
    expect(cache.get("a")).toBeUndefined();
    expect(cache.get("c")).toBeDefined();
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(cache.get("c")).toBeUndefined();
  });
});
