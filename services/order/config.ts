import { z } from "zod";
import { databaseConfigShape, natsConfigShape, redisConfigShape } from "../platform/config.js";

export const orderConfigShape = {
  ...databaseConfigShape,
  ...natsConfigShape,
  ...redisConfigShape,
  INVENTORY_URL: z.url({ protocol: /^https?$/ }).describe("base URL of the inventory service, e.g. http://inventory:8080"),
  INVENTORY_TIMEOUT_MS: z.coerce.number().int().min(100).default(5_000).describe("deadline of order's calls to inventory (product lookups for new orders)"),
  SAGA_STEP_TIMEOUT_MS: z.coerce.number().int().min(100).default(5_000).describe("time a saga step may take before its command is re-sent"),
  ORDER_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(0).default(600).describe("CreateOrder calls per customer and minute (0 = unlimited)"),
  CATALOGUE_CACHE_MS: z.coerce.number().int().min(0).default(5_000).describe("how long a product read from inventory prices new orders before it is read again (0 = read for every order)"),
  ORDER_LOCAL_CACHE_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(5_000)
    .describe("how long a replica answers GetOrder of a finished order from its own memory before asking Redis again (0 = always ask Redis)"),
  ORDER_LOCAL_CACHE_ENTRIES: z.coerce.number().int().min(1).default(10_000).describe("finished orders a replica keeps in its own memory, least recently read dropped first"),
  OUTBOX_RETENTION_MS: z.coerce.number().int().min(0).default(0).describe("how long published outbox rows are kept before they are deleted (0 = delete at publish)"),
  ORDER_RETENTION_DAYS: z.coerce
    .number()
    .int()
    .min(0)
    .default(0)
    .describe("concluded orders (CONFIRMED, REJECTED, CANCELLED) created longer ago than this are deleted, with their lines and history, a minute after start and then once an hour (0 = kept for good)"),
  SAGA_RESERVE_DURING_FRAUD_CHECK: z
    .stringbool()
    .default(true)
    .describe("new orders ask for their stock while the fraud check runs (false: after it passes; for a rolling upgrade from a version that did not)"),
  SAGA_CHARGE_DURING_CHECKS: z
    .stringbool()
    .default(true)
    .describe("new orders are charged while the fraud check and the reservation run, and refunded if either fails (false: charged once both passed; for a rolling upgrade from a version that did not, or so that money held for a failing order never declines the customer's other orders)"),
  SAGA_MAX_ORDERS_IN_PROGRESS: z.coerce
    .number()
    .int()
    .min(0)
    .default(2_000)
    .describe("orders whose saga has not concluded, across all replicas, beyond which CreateOrder answers RESOURCE_EXHAUSTED (0 = no bound)"),
  SAGA_STEP_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(4).describe("sends of a forward step before the order is rejected and compensated"),
};
