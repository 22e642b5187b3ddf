import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { CustomerRateLimit } from "./rate-limit.js";

const redis = new Redis(process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 });
afterAll(() => redis.quit());

async function refusal(check: Promise<void>): Promise<ConnectError | undefined> {
  try {
    await check;
    return undefined;
  } catch (err) {
    return ConnectError.from(err);
  }
}

describe("CustomerRateLimit (real Redis)", () => {
  it("lets a customer place the limit's number of orders a minute and refuses the next with RESOURCE_EXHAUSTED", async () => {
    const limit = new CustomerRateLimit(redis, 3);
    const customer = `rl-${randomUUID()}`;
    for (let i = 0; i < 3; i++) expect(await refusal(limit.check(customer))).toBeUndefined();
    const refused = await refusal(limit.check(customer));
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toContain(`customer ${customer} placed more than 3 orders this minute`);
    // google.rpc.RetryInfo: come back when the minute is over.
    const delay = refused?.findDetails(RetryInfoSchema)[0]?.retryDelay;
    expect(delay).toBeDefined();
    const delayMs = Number(delay?.seconds ?? 0n) * 1_000 + (delay?.nanos ?? 0) / 1e6;
    expect(delayMs).toBeGreaterThan(0);
    expect(delayMs).toBeLessThanOrEqual(60_000);
    // Other customers keep their own count.
    expect(await refusal(limit.check(`rl-${randomUUID()}`))).toBeUndefined();
  });

  it("lets its counter expire", async () => {
    const customer = `rl-${randomUUID()}`;
    await new CustomerRateLimit(redis, 5).check(customer);
    const [key] = await redis.keys(`ratelimit:create-order:${customer}:*`);
    expect(key).toBeDefined();
    const ttl = await redis.pttl(key ?? "");
    expect(ttl).toBeGreaterThan(60_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
  });

  it("is off at 0 and does not refuse while Redis is down", async () => {
    const customer = `rl-${randomUUID()}`;
    const off = new CustomerRateLimit(redis, 0);
    for (let i = 0; i < 3; i++) await off.check(customer);
    expect(await redis.keys(`ratelimit:create-order:${customer}:*`)).toEqual([]);
    const down = new Redis("redis://127.0.0.1:1", { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    const limit = new CustomerRateLimit(down, 1);
    for (let i = 0; i < 3; i++) expect(await refusal(limit.check(customer))).toBeUndefined();
    down.disconnect();
  });
});
