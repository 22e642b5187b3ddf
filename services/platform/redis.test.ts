import { createHash, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { connectRedis, RedisScript, redisReady } from "./redis.js";
import { createLogger } from "./logger.js";
import { freePort } from "../../tools/ports.js";

const redis = new Redis(process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 });
afterAll(() => redis.quit());

describe("RedisScript (real Redis)", () => {
  it("runs by SHA and loads its text again when Redis has forgotten it", async () => {
    const lua = `return redis.call('INCRBY', KEYS[1], ARGV[1]) -- ${randomUUID()}`;
    const sha = createHash("sha1").update(lua).digest("hex");
    const script = new RedisScript(lua);
    const key = `script-test:${randomUUID()}`;
    expect(await redis.script("EXISTS", sha)).toEqual([0]);
    expect(await script.run(redis, [key], [2])).toBe(2);
    expect(await redis.script("EXISTS", sha)).toEqual([1]);
    expect(await script.run(redis, [key], [3])).toBe(5);
    await redis.script("FLUSH");
    expect(await script.run(redis, [key], [4])).toBe(9);
    await redis.del(key);
  });

  it("passes on the script's own errors", async () => {
    const script = new RedisScript("return redis.error_reply('nope')");
    await expect(script.run(redis, [], [])).rejects.toThrow("nope");
  });
});

describe("redisReady", () => {
  const logger = createLogger("redis-test", "error");

  it("resolves true once a new connection is ready, and at once when it already is", async () => {
    const client = connectRedis(process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379", logger, "nothing");
    try {
      expect(client.status).not.toBe("ready");
      expect(await redisReady(client, 5_000)).toBe(true);
      expect(client.status).toBe("ready");
      expect(await redisReady(client, 0)).toBe(true);
    } finally {
      client.disconnect();
    }
  });

  it("resolves false after its timeout while nothing answers, the client still trying", async () => {
    const client = connectRedis(`redis://127.0.0.1:${await freePort()}`, logger, "nothing");
    try {
      expect(await redisReady(client, 300)).toBe(false);
      expect(client.listenerCount("ready")).toBe(1);
      expect(["connecting", "reconnecting"]).toContain(client.status);
    } finally {
      client.disconnect();
    }
  });
});
