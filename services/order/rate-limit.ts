import type { Redis } from "ioredis";
import { counter } from "../platform/metrics.js";
import { orFallback, RedisScript } from "../platform/redis.js";
import { retryLater } from "../platform/rpc/retry-later.js";

const limited = counter("orderflow_order_rate_limited_total", "CreateOrder calls refused by the per-customer rate limit", []);

/** Counts one call in the key and returns the count; the key expires `ARGV[1]` ms after its first call. */
const countCall = new RedisScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`);

/**
 * Per-customer limit on CreateOrder: a counter per customer and minute in Redis.
 * While Redis is down the limit is not enforced (the orders are still correct).
 */
export class CustomerRateLimit {
  constructor(private readonly redis: Redis, private readonly perMinute: number) {}

  async check(customerId: string): Promise<void> {
    if (this.perMinute <= 0) return;
    const now = Date.now();
    const minute = Math.floor(now / 60_000);
    const key = `ratelimit:create-order:${customerId}:${minute}`;
    const count = Number(await orFallback(() => countCall.run(this.redis, [key], [120_000]), 0));
    if (count > this.perMinute) {
      limited.inc();
      throw retryLater(`customer ${customerId} placed more than ${this.perMinute} orders this minute; retry later`, (minute + 1) * 60_000 - now);
    }
  }
}
