import { randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetOrderResponseSchema, OrderSchema, OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { NATS_URL, natsLink, type NatsLink, waitFor } from "../platform/bus/testkit.js";
import { OrderCache } from "./cache.js";
import { LocalOrderCopies } from "./local-copies.js";

const redis = new Redis(process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 });
const key = (orderId: string) => `order:${orderId}`;
const confirmed = (orderId: string, version = 4n) => create(OrderSchema, { orderId, status: OrderStatus.CONFIRMED, version, customerId: "c-local" });

/** A replica's cache: its own NATS connection, the shared Redis. */
interface Replica {
  nc: NatsConnection;
  copies: LocalOrderCopies;
  cache: OrderCache;
}

async function replica(natsUrl = NATS_URL, ttlMs = 60_000): Promise<Replica> {
  const nc = await connect({ servers: natsUrl, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  const copies = new LocalOrderCopies(nc, { ttlMs, maxEntries: 100, evictTimeoutMs: 500 });
  await copies.ready();
  return { nc, copies, cache: new OrderCache(redis, { ttlMs: 60_000, local: copies }) };
}

/** What the replica answers from its own memory alone (Redis's copy deleted first). */
async function servedLocally(r: Replica, orderId: string) {
  await redis.del(key(orderId));
  const answer = await r.cache.getAnswer(orderId);
  return answer && fromBinary(GetOrderResponseSchema, answer.bytes).order;
}

let a: Replica;
let b: Replica;
let link: NatsLink;
const opened: Replica[] = [];

beforeAll(async () => {
  link = await natsLink();
  [a, b] = await Promise.all([replica(), replica()]);
  opened.push(a, b);
});

afterAll(async () => {
  for (const r of opened) {
    await r.copies.stop();
    await r.nc.close();
  }
  await link.close();
  await redis.quit();
});

describe("OrderCache with local copies (real Redis and NATS)", () => {
  it("answers a finished order it offered or read from Redis without asking Redis again", async () => {
    const offered = randomUUID();
    await a.cache.offer(confirmed(offered));
    expect(await servedLocally(a, offered)).toEqual(confirmed(offered));

    const read = randomUUID();
    await a.cache.offer(confirmed(read));
    expect(await b.cache.getAnswer(read)).toBeDefined();
    expect(await servedLocally(b, read)).toEqual(confirmed(read));
  });

  it("drops every replica's copy when one replica invalidates the order", async () => {
    const id = randomUUID();
    await a.cache.offer(confirmed(id));
    await b.cache.getAnswer(id);
    expect(b.copies.get(id)).toBeDefined();
    expect(await a.cache.invalidate(id, 5n)).toBe(true);
    expect(a.copies.get(id)).toBeUndefined();
    await waitFor(() => b.copies.get(id) === undefined, 2_000, "replica b to drop its copy");
    expect(await b.cache.getAnswer(id)).toBeUndefined();
  });

  it("keeps no copy Redis refused as older than a change", async () => {
    const id = randomUUID();
    expect(await a.cache.invalidate(id, 5n)).toBe(true);
    expect(await a.cache.offer(confirmed(id, 4n))).toBeDefined();
    expect(a.copies.get(id)).toBeUndefined();
  });

  it("keeps no copy read while an eviction was heard", async () => {
    const id = randomUUID();
    await a.cache.offer(confirmed(id));
    const reading = b.cache.getAnswer(id);
    await b.copies.evictEverywhere(randomUUID());
    expect(await reading).toBeDefined();
    expect(b.copies.get(id)).toBeUndefined();
  });

  it("with a time to live of 0 keeps nothing, yet its invalidations drop the other replicas' copies", async () => {
    const off = await replica(NATS_URL, 0);
    opened.push(off);
    const id = randomUUID();
    await off.cache.offer(confirmed(id));
    expect(await servedLocally(off, id)).toBeUndefined();
    await a.cache.offer(confirmed(id));
    expect(a.copies.get(id)).toBeDefined();
    expect(await off.cache.invalidate(id, 5n)).toBe(true);
    await waitFor(() => a.copies.get(id) === undefined, 2_000, "replica a to drop its copy");
  });

  it("serves a copy no longer than its time to live", async () => {
    const short = await replica(NATS_URL, 50);
    opened.push(short);
    const id = randomUUID();
    await short.cache.offer(confirmed(id));
    expect(short.copies.get(id)).toBeDefined();
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await servedLocally(short, id)).toBeUndefined();
  });

  it("drops its copies when its NATS connection drops (evictions sent meanwhile are lost)", async () => {
    const linked = await replica(link.url);
    opened.push(linked);
    const id = randomUUID();
    await linked.cache.offer(confirmed(id));
    await link.cut();
    await waitFor(() => linked.copies.get(id) === undefined, 5_000, "the copies to be dropped");
    await link.restore();
  });

  it("refuses an invalidation NATS cannot confirm", async () => {
    const linked = await replica(link.url);
    opened.push(linked);
    await link.cut();
    expect(await linked.cache.invalidate(randomUUID(), 2n)).toBe(false);
    await link.restore();
  });
});
