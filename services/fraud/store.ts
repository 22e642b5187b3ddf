import { Redis } from "ioredis";
import { Decision } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { RedisScript } from "../platform/redis.js";
import type { Assessment, Reason, ReasonCode } from "./rules.js";

/** How long the saga's decision for an order is kept: a re-sent command within it gets the same answer. */
export const decisionTtlSeconds = 24 * 60 * 60;

/** Redis's clock in ms: one clock for every fraud replica's windows, whatever theirs say. */
const redisNowMs = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * The saga's first look at an order, in one round trip: the decision stored for it, if any;
 * else what fell out of its customer's window dropped, the order added (NX: a redelivered or
 * re-sent command keeps its first time and counts once — or, its first time out of the window,
 * counts again now), and how many orders remain. Times are Redis's. The window's key expires
 * with the window, so idle customers cost nothing. Two keys in one script: for a single Redis
 * (as deployed), not Redis Cluster.
 */
const decidedOrRecordScript = new RedisScript(`
local decided = redis.call('GET', KEYS[2])
if decided then return {1, decided} end
${redisNowMs}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {0, redis.call('ZCARD', KEYS[1])}
`);

/** The dry run's count on the same clock: the orders in the window, plus this one unless counted already. */
const countScript = new RedisScript(`
${redisNowMs}
local since = now - tonumber(ARGV[2])
local n = redis.call('ZCOUNT', KEYS[1], '(' .. since, '+inf')
if ARGV[1] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if score and tonumber(score) > since then return n end
end
return n + 1
`);

/** The decision already stored for an order, or the count of its customer's orders in the window once it is recorded. */
export type DecidedOrCounted = { decided: Assessment } | { ordersInWindow: number };

/** fraud's state in Redis: per-customer velocity windows and the saga's decisions by order. */
export class FraudStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = "fraud:",
  ) {}

  private velocityKey(customerId: string): string {
    return `${this.prefix}velocity:${customerId}`;
  }

  private decisionKey(orderId: string): string {
    return `${this.prefix}decision:${orderId}`;
  }

  /** The order's stored decision; without one, records the order in its customer's window and counts the orders there, this one included. */
  async decidedOrRecorded(customerId: string, orderId: string, windowSeconds: number): Promise<DecidedOrCounted> {
    const reply = await decidedOrRecordScript.run(this.redis, [this.velocityKey(customerId), this.decisionKey(orderId)], [orderId, windowSeconds * 1000]);
    if (Array.isArray(reply) && reply[0] === 1 && typeof reply[1] === "string") return { decided: parseAssessment(reply[1]) };
    if (Array.isArray(reply) && reply[0] === 0 && typeof reply[1] === "number") return { ordersInWindow: reply[1] };
    throw new Error(`unexpected reply from the decision-or-record script: ${JSON.stringify(reply)}`);
  }

  /** Dry run of decidedOrRecorded's count: the count it would return, without writing. */
  async countOrders(customerId: string, orderId: string, windowSeconds: number): Promise<number> {
    const reply = await countScript.run(this.redis, [this.velocityKey(customerId)], [orderId, windowSeconds * 1000]);
    if (typeof reply !== "number") throw new Error(`unexpected reply from the count script: ${JSON.stringify(reply)}`);
    return reply;
  }

  /** Stores the decision unless one exists (SET NX, a day); returns the one that holds. */
  async saveDecision(orderId: string, assessment: Assessment): Promise<Assessment> {
    const key = this.decisionKey(orderId);
    const set = await this.redis.set(key, JSON.stringify(assessment), "EX", decisionTtlSeconds, "NX");
    if (set === "OK") return assessment;
    const existing = await this.redis.get(key);
    return existing === null ? assessment : parseAssessment(existing);
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.redis.ping()) === "PONG";
    } catch {
      return false;
    }
  }
}

const reasonCodes: ReadonlySet<string> = new Set<ReasonCode>(["amount_limit", "velocity", "blocked_customer", "missing_total"]);

function parseAssessment(raw: string): Assessment {
  const value: unknown = JSON.parse(raw);
  if (typeof value !== "object" || value === null || !("decision" in value) || !("reasons" in value) || !Array.isArray(value.reasons)) {
    throw new Error(`stored fraud decision is malformed: ${raw}`);
  }
  const decision = value.decision === Decision.APPROVE ? Decision.APPROVE : value.decision === Decision.DECLINE ? Decision.DECLINE : undefined;
  if (decision === undefined) throw new Error(`stored fraud decision is malformed: ${raw}`);
  const reasons: Reason[] = value.reasons.map((r: unknown): Reason => {
    if (typeof r === "object" && r !== null && "code" in r && "message" in r && typeof r.code === "string" && reasonCodes.has(r.code) && typeof r.message === "string") {
      return { code: r.code as ReasonCode, message: r.message };
    }
    throw new Error(`stored fraud decision is malformed: ${raw}`);
  });
  return { decision, reasons };
}
