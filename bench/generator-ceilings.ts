import { performance } from "node:perf_hooks";
import { AckPolicy, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { surviveDroppedConnections } from "../services/platform/db.js";
import { sleep } from "./log.js";
import type { JetStreamCeilingJob, JetStreamCeilingResult, PgCeilingJob, PgCeilingResult } from "./protocol.js";
import { round, Samples, sum } from "./stats.js";

/** Raw Postgres: `BEGIN; INSERT; COMMIT` of one row on every connection, as fast as each answers. */
export async function pgCeiling(job: PgCeilingJob): Promise<PgCeilingResult> {
  const pool = surviveDroppedConnections(new pg.Pool({ connectionString: job.databaseUrl, max: job.connections, application_name: "orderflow-bench-ceiling" }));
  try {
    await pool.query("CREATE TABLE IF NOT EXISTS public.bench_ceiling (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text NOT NULL, at timestamptz NOT NULL DEFAULT now())");
    const version = (await pool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? "unknown";
    const clients = await Promise.all(Array.from({ length: job.connections }, () => pool.connect()));
    const latency = new Samples(1 << 16);
    const perConnection = new Array<number>(job.connections).fill(0);
    const t0 = performance.now();
    const end = t0 + job.durationMs;
    await Promise.all(
      clients.map(async (client, index) => {
        while (performance.now() < end) {
          const started = performance.now();
          await client.query("BEGIN");
          await client.query("INSERT INTO public.bench_ceiling (payload) VALUES ($1)", [`tx-${index}`]);
          await client.query("COMMIT");
          latency.add(performance.now() - started);
          perConnection[index] = (perConnection[index] ?? 0) + 1;
        }
      }),
    );
    const elapsed = performance.now() - t0;
    for (const client of clients) client.release();
    await pool.query("DROP TABLE IF EXISTS public.bench_ceiling");
    const transactions = sum(perConnection);
    return {
      kind: "ceiling-pg",
      connections: job.connections,
      durationMs: round(elapsed, 0),
      transactions,
      txPerSec: round(transactions / (elapsed / 1_000), 1),
      latency: latency.summary(),
      postgresVersion: version,
    };
  } finally {
    await pool.end().catch(() => undefined);
  }
}

/** Raw JetStream: messages published a window at a time into a file-backed stream and consumed with explicit acks. */
export async function jetStreamCeiling(job: JetStreamCeilingJob): Promise<JetStreamCeilingResult> {
  // As the services connect (services/platform/bus-runtime.ts): no stack captured per request, each publish being one.
  const nc = await connect({ servers: job.natsUrl, name: "orderflow-bench-ceiling", noAsyncTraces: true });
  const stream = `BENCH_CEILING_${process.pid}`;
  const subject = `bench.ceiling.${process.pid}`;
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File });
    await jsm.consumers.add(stream, { durable_name: "ceiling", ack_policy: AckPolicy.Explicit, max_ack_pending: 20_000 });
    const js = jetstream(nc);
    const consumer = await js.consumers.get(stream, "ceiling");
    const payload = new Uint8Array(job.payloadBytes).fill(120);
    const t0 = performance.now();
    const consumed = (async () => {
      const messages = await consumer.consume({ max_messages: 1_000 });
      let seen = 0;
      for await (const message of messages) {
        message.ack();
        seen += 1;
        if (seen >= job.messages) break;
      }
      // The last acks leave with the next flush.
      await nc.flush();
      return performance.now();
    })();
    let published = 0;
    const publisher = async (): Promise<void> => {
      while (published < job.messages) {
        published += 1;
        await js.publish(subject, payload);
      }
    };
    await Promise.all(Array.from({ length: job.window }, publisher));
    const publishedAt = performance.now();
    const consumedAt = await Promise.race([consumed, sleep(60_000).then(() => Number.NaN)]);
    if (Number.isNaN(consumedAt)) throw new Error("the JetStream consumer did not receive every message within 60 s");
    return {
      kind: "ceiling-jetstream",
      messages: job.messages,
      payloadBytes: job.payloadBytes,
      window: job.window,
      roundTripMsgsPerSec: round(job.messages / ((consumedAt - t0) / 1_000), 0),
      publishMsgsPerSec: round(job.messages / ((publishedAt - t0) / 1_000), 0),
      elapsedMs: round(consumedAt - t0, 0),
    };
  } finally {
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(stream);
    } catch {
      // Gone already.
    }
    await nc.close().catch(() => undefined);
  }
}

