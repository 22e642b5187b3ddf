import { createHash } from "node:crypto";
import { type Command, Redis, type RedisKey, type RedisOptions, type RedisValue } from "ioredis";
import { errorMessage } from "./errors.js";
import type { Logger } from "./logger.js";
import { holdWritesForTurn } from "./turn-writes.js";

/** One connection attempt's time: also how long a service waits at start for Redis before it serves without it. */
const connectTimeoutMs = 2_000;

/** The client settings of `connectRedis`. */
export const redisClientOptions = {
  enableOfflineQueue: false,
  enableAutoPipelining: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 500,
  connectTimeout: connectTimeoutMs,
  retryStrategy: (attempt: number): number => Math.min(attempt * 200, 2_000),
} satisfies RedisOptions;

/**
 * A client whose commands of one turn of the event loop leave in one write (see
 * holdWritesForTurn): a CreateOrder's rate-limit call, a GetOrder's cache read, each paid
 * a system call and a wake-up of Redis. Auto-pipelining coalesces too, but through
 * Pipeline objects that keep finished commands alive (see connectRedis).
 */
class TurnWritesRedis extends Redis {
  override sendCommand(command: Command, stream?: Parameters<Redis["sendCommand"]>[1]): unknown {
    if (this.status === "ready") holdWritesForTurn(this.stream);
    return super.sendCommand(command, stream);
  }
}

/**
 * A Redis connection for data that makes things faster, never more correct.
 * Commands fail fast while Redis is unreachable (no offline queue, short
 * timeout) so callers fall back at once instead of stalling; the client keeps
 * reconnecting in the background. `degraded` says what is lost while it is down.
 * No auto-pipelining: under load, ioredis's pipelines keep finished commands
 * alive through scavenges (about 1,000 bytes promoted to the old generation per
 * command, against 100 without), which made every scavenge of a service that
 * calls Redis per message long; cached GetOrder serves more calls per CPU-second
 * without it (redis.test.ts, docs/performance-history.md). The commands of a turn
 * still leave together (TurnWritesRedis).
 */
export function connectRedis(url: string, logger: Logger, degraded: string): Redis {
  const redis = new TurnWritesRedis(url, redisClientOptions);
  let reported = false;
  redis.on("error", (error: unknown) => {
    if (reported) return;
    reported = true;
    logger.warn(`redis unavailable: ${degraded} until it is back`, { error: errorMessage(error) });
  });
  redis.on("ready", () => {
    if (reported) logger.info("redis available again");
    reported = false;
  });
  return redis;
}

/**
 * Resolves true once the connection is ready, or false after `timeoutMs` (default: one
 * connection attempt's time; the client goes on reconnecting). A service waits for this
 * before it serves: without the offline queue, calls made while the connection is still
 * being set up would skip the cache and the limits.
 */
export function redisReady(redis: Redis, timeoutMs = connectTimeoutMs): Promise<boolean> {
  if (redis.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ready: boolean): void => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ready);
    };
    const onReady = (): void => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on("ready", onReady);
  });
}

/** Runs a Redis operation; on any failure returns the fallback (Redis down = slower, never wrong). */
export async function orFallback<T>(operation: () => Promise<T>, fallback: T): Promise<T> {
  try {
    return await operation();
  } catch {
    return fallback;
  }
}

/**
 * A Lua script called by its SHA1 (EVALSHA): its text goes over the wire only when
 * Redis does not know it (NOSCRIPT: the first call, or after a restart or SCRIPT FLUSH).
 */
export class RedisScript {
  private readonly sha: string;

  constructor(private readonly lua: string) {
    this.sha = createHash("sha1").update(lua).digest("hex");
  }

  async run(redis: Redis, keys: readonly RedisKey[], args: readonly RedisValue[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}
