import { Redis } from "ioredis";
import { Decision } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { RedisScript } from "../platform/redis.js";
import type { Assessment, Reason, ReasonCode } from "./rules.js";

/** How long the saga's decision for an order is kept: a re-sent command within it gets the same answer. */
export const decisionTtlSeconds = 24 * 60 * 60;

/**
 * Adds the order to the customer's window (NX: a redelivered or re-sent command keeps
 * its first time and counts once), drops what fell out of the window, and returns
 * how many orders remain. The key expires with the window, so idle customers cost nothing.
 */
const recordScript = new RedisScript(`
redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCARD', KEYS[1])
`);

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

  /** Records the order in its customer's window and returns the customer's orders in the window, this one included. */
  async recordOrder(customerId: string, orderId: string, nowMs: number, windowSeconds: number): Promise<number> {
    const windowMs = windowSeconds * 1000;
    const count = await recordScript.run(this.redis, [this.velocityKey(customerId)], [nowMs, nowMs - windowMs, orderId, windowMs]);
    if (typeof count !== "number") throw new Error(`unexpected reply from the velocity script: ${String(count)}`);
    return count;
  }

  /** Dry run of recordOrder: the count it would return, without writing. */
  async countOrders(customerId: string, orderId: string, nowMs: number, windowSeconds: number): Promise<number> {
    const key = this.velocityKey(customerId);
    const since = nowMs - windowSeconds * 1000;
    const [inWindow, score] = await Promise.all([this.redis.zcount(key, `(${since}`, "+inf"), orderId === "" ? Promise.resolve(null) : this.redis.zscore(key, orderId)]);
    const alreadyCounted = score !== null && Number(score) > since;
    return inWindow + (alreadyCounted ? 0 : 1);
  }

  async getDecision(orderId: string): Promise<Assessment | undefined> {
    const raw = await this.redis.get(this.decisionKey(orderId));
    return raw === null ? undefined : parseAssessment(raw);
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
