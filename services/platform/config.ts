import { z } from "zod";

/** Settings every service reads. */
export const baseConfigShape = {
  PORT: z.coerce.number().int().min(1).max(65535).default(8080).describe("TCP port for gRPC, gRPC-Web and Connect"),
  RPC_TRANSPORT: z.enum(["grpc-js", "connect"]).default("grpc-js").describe("who serves HTTP/2 (h2c) connections: grpc-js (native gRPC only) or connect (gRPC, gRPC-Web and Connect); HTTP/1.1 always goes to connect-node"),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9090).describe("TCP port for Prometheus /metrics (0 disables)"),
  METRICS_EVENT_LOOP_RESOLUTION_MS: z.coerce.number().int().min(1).max(10_000).default(100).describe("sampling timer of the event-loop delay metric; each tick wakes the process"),
  LOG_LEVEL: z.enum(["error", "warn", "info", "debug"]).default("info"),
  MAX_CONNECTION_AGE_MS: z.coerce.number().int().min(0).default(300_000).describe("HTTP/2 connections are closed gracefully after about this long, so clients reconnect and spread over new replicas (0 = never)"),
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(10_000).describe("time allowed for in-flight work on SIGTERM"),
};

const postgresUrl = z.string().regex(/^postgres(ql)?:\/\//, "a postgres:// URL");

/** Settings of services that keep state in Postgres. */
export const databaseConfigShape = {
  DATABASE_URL: postgresUrl.describe("primary (read-write) Postgres URL"),
  DATABASE_READ_URL: postgresUrl.optional().describe("read replica URL; queries go here when set"),
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(500).default(10).describe("connections of the pool that serves requests"),
  DATABASE_BACKGROUND_POOL_MAX: z.coerce.number().int().min(1).max(500).default(10).describe("connections of the separate pool of the saga's consumers, outbox relay and sweeps"),
};

export const natsConfigShape = {
  NATS_URL: z.string().regex(/^(nats|tls|wss?):\/\//, "a nats:// URL").default("nats://127.0.0.1:4222"),
  NATS_STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1).describe("copies JetStream keeps of each saga stream: 3 on a clustered NATS, so a server's restart or lost volume loses nothing"),
  NATS_STREAM_MAX_BYTES: z.coerce.number().int().min(-1).default(-1).describe("most bytes each saga stream (and the dead letters) holds; at it a saga stream refuses new messages, which wait in the order service's outbox or with the participant that replies, and the dead letters drop their oldest; -1: no bound"),
};

/** The NATS settings every service parses (natsConfigShape). */
export type NatsConfig = z.infer<z.ZodObject<typeof natsConfigShape>>;

export const redisConfigShape = {
  REDIS_URL: z.string().regex(/^rediss?:\/\//, "a redis:// URL").default("redis://127.0.0.1:6379"),
};

export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Parses the environment against a shape. On failure throws ConfigError whose
 * message is one line naming each bad variable and what it expects.
 */
export function parseConfig<S extends z.ZodRawShape>(shape: S, env: NodeJS.ProcessEnv = process.env): z.infer<z.ZodObject<S>> {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ""));
  const result = z.object(shape).safeParse(present);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join(".");
    const got = present[name];
    const expected = issue.code === "invalid_type" && got === undefined ? "is required" : `must be ${describeIssue(issue)}`;
    return `${name} ${expected}${got === undefined ? "" : ` (got ${JSON.stringify(got)})`}`;
  });
  throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_format" && issue.format === "regex") return issue.message;
  return issue.message.replace(/^Invalid input: /, "").toLowerCase();
}

/** parseConfig for a process entry point: a bad environment stops the process with one line. */
export function loadConfig<S extends z.ZodRawShape>(shape: S): z.infer<z.ZodObject<S>> {
  try {
    return parseConfig(shape);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(78);
  }
}
