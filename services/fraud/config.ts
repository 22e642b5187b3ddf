import { z } from "zod";
import { natsConfigShape, redisConfigShape } from "../platform/config.js";

const customerList = z
  .string()
  .default("")
  .transform((value) => new Set(value.split(",").map((id) => id.trim()).filter((id) => id !== "")))
  .describe("comma-separated customer ids whose orders are always declined");

/** fraud keeps no Postgres state: Redis (velocity, decisions) and NATS only. */
export const fraudConfigShape = {
  ...natsConfigShape,
  ...redisConfigShape,
  FRAUD_MAX_ORDER_AMOUNT_MINOR: z.coerce.bigint().min(0n).default(500_000n).describe("largest order total accepted, in minor units (500000 = 5,000.00)"),
  FRAUD_VELOCITY_MAX_ORDERS: z.coerce.number().int().min(1).default(20).describe("orders a customer may place within the velocity window"),
  FRAUD_VELOCITY_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60).describe("length of the velocity window"),
  FRAUD_BLOCKED_CUSTOMERS: customerList,
  FRAUD_REDIS_PREFIX: z.string().default("fraud:").describe("prefix of every Redis key fraud writes"),
};
