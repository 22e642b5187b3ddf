import { randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { GetOrderResponseSchema, OrderSchema, OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { OrderCache } from "./cache.js";

const redis = new Redis(process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 });
const cache = new OrderCache(redis, { ttlMs: 60_000 });
afterAll(() => redis.quit());

/** The cached copy, decoded. */
async function cached(orderId: string) {
  const answer = await cache.getAnswer(orderId);
  return answer && fromBinary(GetOrderResponseSchema, answer.bytes).order;
}

const order = (orderId: string, status: OrderStatus, version: bigint) => create(OrderSchema, { orderId, status, version, customerId: "c\u00e9\u0000binary" });

describe("OrderCache (real Redis)", () => {
  it("caches terminal orders only, byte for byte", async () => {
    const id = randomUUID();
    expect(await cache.offer(order(id, OrderStatus.PENDING, 1n))).toBeUndefined();
    expect(await cached(id)).toBeUndefined();
    const answer = await cache.offer(order(id, OrderStatus.CONFIRMED, 4n));
    expect(answer && fromBinary(GetOrderResponseSchema, answer.bytes).order).toEqual(order(id, OrderStatus.CONFIRMED, 4n));
    expect(await cached(id)).toEqual(order(id, OrderStatus.CONFIRMED, 4n));
  });

  it("never lets an older copy replace a newer one or an invalidation", async () => {
    const id = randomUUID();
    await cache.offer(order(id, OrderStatus.CONFIRMED, 4n));
    expect(await cache.invalidate(id, 5n)).toBe(true);
    expect(await cached(id)).toBeUndefined();
    await cache.offer(order(id, OrderStatus.CONFIRMED, 4n));
    expect(await cached(id)).toBeUndefined();
    await cache.offer(order(id, OrderStatus.CANCELLED, 6n));
    expect((await cached(id))?.status).toBe(OrderStatus.CANCELLED);
  });

  it("reports an invalidation it could not make", async () => {
    const down = new Redis("redis://127.0.0.1:1", { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    expect(await new OrderCache(down).invalidate(randomUUID(), 2n)).toBe(false);
    expect(await new OrderCache(down).getAnswer(randomUUID())).toBeUndefined();
    down.disconnect();
  });
});
