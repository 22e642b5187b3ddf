import { createHash, randomUUID } from "node:crypto";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it, vi } from "vitest";
import { connectRedis, redisClientOptions, RedisScript, redisReady } from "./redis.js";
import { createLogger } from "./logger.js";
import { freePort } from "../../tools/ports.js";
import { repoRoot } from "../../tools/system.js";

const url = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";
const redis = new Redis(url, { maxRetriesPerRequest: 1 });
const run = promisify(execFile);
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
    const client = connectRedis(url, logger, "nothing");
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

describe("connectRedis's client", () => {
  it("sends the commands of one turn of the event loop in one write, and a later turn's in its own", async () => {
    const client = connectRedis(url, createLogger("redis-test", "error"), "nothing");
    const keys = Array.from({ length: 20 }, (_, i) => `turn-writes-test:${randomUUID()}:${i}`);
    try {
      expect(await redisReady(client, 5_000)).toBe(true);
      const single = vi.spyOn(client.stream, "_write");
      const gathered = vi.spyOn(client.stream, "_writev");
      expect(await Promise.all(keys.map((key) => client.incrby(key, 2)))).toEqual(keys.map(() => 2));
      expect([single.mock.calls.length, gathered.mock.calls.length]).toEqual([0, 1]);
      expect(gathered.mock.calls[0]?.[0]).toHaveLength(keys.length);
      expect(await client.incrby(keys[0]!, 3)).toBe(5);
      expect([single.mock.calls.length, gathered.mock.calls.length]).toEqual([1, 1]);
    } finally {
      await redis.del(keys);
      client.disconnect();
    }
  });
});

/** A module's URL in the compiled tree (the test run compiles it first, for the end-to-end tests). */
const compiled = (path: string): string => JSON.stringify(pathToFileURL(join(repoRoot(), "dist", path)).href);

/**
 * Bytes the old generation gained across scavenges per command, in a child process of its
 * own (a test worker's young generation is too small to tell a chain from work in flight):
 * 32 callers each run INCR then GET, first unmeasured to let V8 size the young generation.
 * `makeClient` is module code that declares `client`.
 */
async function promotedPerCommand(makeClient: string): Promise<number> {
  const script = `
    import { GCProfiler } from "node:v8";
    ${makeClient}
    await new Promise((resolve) => (client.status === "ready" ? resolve() : client.once("ready", resolve)));
    async function load(rounds) {
      let started = 0;
      const caller = async () => {
        while (started < rounds) {
          const key = "scavenge-test:" + (started++ % 50);
          await client.incr(key);
          await client.get(key);
        }
      };
      await Promise.all(Array.from({ length: 32 }, caller));
    }
    await load(10_000);
    const profiler = new GCProfiler();
    profiler.start();
    await load(20_000);
    const oldSpace = (heap) => heap.heapSpaceStatistics.find((space) => space.spaceName === "old_space").spaceUsedSize;
    const promoted = profiler.stop().statistics.filter((gc) => gc.gcType === "Scavenge").reduce((sum, gc) => sum + Math.max(0, oldSpace(gc.afterGC) - oldSpace(gc.beforeGC)), 0);
    await client.del(Array.from({ length: 50 }, (_, i) => "scavenge-test:" + i));
    client.disconnect();
    console.log(promoted / 40_000);`;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script]);
  return Number(stdout.trim());
}

describe("connectRedis's client and the scavenger", () => {
  it("promotes a fraction of what an auto-pipelining client does", async () => {
    const { retryStrategy: _function, ...ours } = redisClientOptions;
    const withPipelines = await promotedPerCommand(`
      import { Redis } from "ioredis";
      const client = new Redis(${JSON.stringify(url)}, ${JSON.stringify({ ...ours, enableAutoPipelining: true })});`);
    const withoutPipelines = await promotedPerCommand(`
      import { connectRedis } from ${compiled("services/platform/redis.js")};
      import { createLogger } from ${compiled("services/platform/logger.js")};
      const client = connectRedis(${JSON.stringify(url)}, createLogger("scavenge-test", "error"), "nothing");`);
    expect(withPipelines).toBeGreaterThan(300);
    expect(withoutPipelines).toBeLessThan(withPipelines / 3);
  });
});
