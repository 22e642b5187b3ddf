import { toBinary } from "@bufbuild/protobuf";
import type { Redis } from "ioredis";
import { type Order, OrderSchema } from "../../gen/orderflow/order/v1/order_pb.js";
import { deferredCounter } from "../platform/metrics.js";
import { orFallback, RedisScript } from "../platform/redis.js";
import { isTerminal } from "./domain/status.js";
import type { LocalOrderCopies } from "./local-copies.js";
import { type GetOrderAnswer, getOrderAnswer } from "./response-encoding.js";

const lookups = deferredCounter("orderflow_order_cache_lookups_total", "GetOrder cache lookups by result", ["result"]);
const lookupResult = { local: { result: "local" }, hit: { result: "hit" }, miss: { result: "miss" } } as const;

/**
 * Stores `<version>:<payload>` unless the key holds a version at least as new, so
 * a slow reader can never put back an older order than one already cached or
 * announced. An empty payload is a "not cacheable" marker of that version.
 */
const storeIfNewer = new RedisScript(`
local current = redis.call('GET', KEYS[1])
if current then
  local v = tonumber(string.match(current, '^(%d+):'))
  if v and v >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
`);

/**
 * Redis cache of GetOrder for orders in a terminal status, which the saga no
 * longer changes. The one change a terminal order can still see, the cancel of
 * a CONFIRMED order, marks the key with the new version before anything else
 * can read it, so the old CONFIRMED copy cannot come back. With `local`, hot
 * orders are also kept in the process (see LocalOrderCopies).
 */
export class OrderCache {
  private readonly ttlMs: number;
  private readonly local: LocalOrderCopies | undefined;

  constructor(
    private readonly redis: Redis,
    options: { ttlMs?: number; local?: LocalOrderCopies } = {},
  ) {
    this.ttlMs = options.ttlMs ?? 10 * 60_000;
    this.local = options.local;
  }

  private key(orderId: string): string {
    return `order:${orderId}`;
  }

  /** The GetOrder answer of the cached order, held encoded (callers pass it on without decoding it). */
  async getAnswer(orderId: string): Promise<GetOrderAnswer | undefined> {
    const copy = this.local?.get(orderId);
    if (copy) {
      lookups.inc(lookupResult.local);
      return copy;
    }
    const mark = this.local?.mark();
    const raw = await orFallback(() => this.redis.getBuffer(this.key(orderId)), null);
    const sep = raw?.indexOf(0x3a) ?? -1;
    if (!raw || sep < 0 || sep === raw.length - 1) {
      lookups.inc(lookupResult.miss);
      return undefined;
    }
    lookups.inc(lookupResult.hit);
    const answer = getOrderAnswer(raw.subarray(sep + 1));
    if (mark !== undefined) this.local?.keep(orderId, answer, mark);
    return answer;
  }

  /** Caches the order if it is terminal; returns the answer it cached (undefined for an order it does not cache). */
  async offer(order: Order): Promise<GetOrderAnswer | undefined> {
    if (!isTerminal(order.status)) return undefined;
    const encoded = toBinary(OrderSchema, order);
    const payload = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
    const mark = this.local?.mark();
    const stored = await orFallback(() => storeIfNewer.run(this.redis, [this.key(order.orderId)], [order.version.toString(), payload, this.ttlMs]), 0);
    // Only a copy Redis took as the newest may be kept here: a refused one is older than a change.
    const answer = getOrderAnswer(encoded);
    if (stored === 1 && mark !== undefined) this.local?.keep(order.orderId, answer, mark);
    return answer;
  }

  /**
   * Marks the order as changing to `version`: older copies are refused from now
   * on, then every replica's local copy is dropped. Returns false if Redis or NATS
   * could not be told, in which case the change must not happen (a cached copy
   * would outlive it).
   */
  async invalidate(orderId: string, version: bigint): Promise<boolean> {
    const marked = await orFallback(async () => {
      await storeIfNewer.run(this.redis, [this.key(orderId)], [version.toString(), "", this.ttlMs]);
      return true;
    }, false);
    // After the mark: a replica that drops its copy can read the order again only as changing.
    return marked && (this.local ? await this.local.evictEverywhere(orderId) : true);
  }
}
