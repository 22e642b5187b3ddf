/**
 * Test support for the bus (used by the *.test.ts beside it, and handy for service tests):
 * real NATS + Postgres, with a unique schema, unique stream names / subject prefixes per
 * call so test files can run in parallel, and a cleanup that removes them.
 */
import { randomBytes } from "node:crypto";
import { connect as connectTcp, createServer, type Server, type Socket } from "node:net";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import { connect, headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { context, propagation } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import pg from "pg";
import { surviveDroppedConnections } from "../db.js";
import type { Connections } from "../lane.js";
import { type Counter, register } from "prom-client";
import { errorMessage } from "../errors.js";
import { receivedEntries } from "./bundle.js";
import { commandStreamName, type DlqConfig, Header, streamName } from "./names.js";
import { JetStreamPublisher, type StreamPublisher } from "./jetstream-publisher.js";
import { ensureBusTables } from "./sql.js";
import { deleteStreams, ensureStreams } from "./streams.js";

export interface BusTestEnv {
  nc: NatsConnection;
  js: JetStreamClient;
  /** The services' publisher on `nc` (closed by cleanup). */
  publisher: JetStreamPublisher;
  jsm: JetStreamManager;
  pool: pg.Pool;
  natsUrl: string;
  databaseUrl: string;
  /** Unique Postgres schema with the bus tables. */
  schema: string;
  /** Unique domain name for a logical one: `domain("inventory")` -> `t1a2b3c_inventory` (subjects `t1a2b3c_inventory.>`). */
  domain(name: string): string;
  /** Stream of a logical domain: `stream("inventory")` -> `T1A2B3C_INVENTORY`. */
  stream(name: string): string;
  dlq: DlqConfig;
  /** Deletes the streams, drops the schema, closes connections. */
  cleanup(): Promise<void>;
}

export const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
export const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Where the test infrastructure is: e.g. vitest's `inject("infra")` from test/support/global-setup.ts. */
export interface BusTestUrls {
  natsUrl?: string | undefined;
  databaseUrl?: string | undefined;
}

export interface BusTestOptions {
  /** Logical domains whose commands get a stream of their own, as the saga's participants' do. */
  commandStreams?: readonly string[];
}

export async function busTestEnv(domains: readonly string[], urls: BusTestUrls | null = null, options: BusTestOptions = {}): Promise<BusTestEnv> {
  const id = `t${randomBytes(4).toString("hex")}`;
  const natsUrl = urls?.natsUrl ?? NATS_URL;
  const databaseUrl = urls?.databaseUrl ?? DATABASE_URL;
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: natsUrl, timeout: 3000 });
  } catch (err) {
    throw new Error(`bus tests need NATS with JetStream at ${natsUrl} (set NATS_URL): ${errorMessage(err)}`);
  }
  // Pipelined, as the services' pools are (db.ts).
  const pool = surviveDroppedConnections(new pg.Pool({ connectionString: databaseUrl, max: 20, connectionTimeoutMillis: 3000, pipeline: true }));
  try {
    await pool.query("SELECT 1");
  } catch (err) {
    await nc.close();
    await pool.end();
    throw new Error(`bus tests need Postgres at ${databaseUrl} (set DATABASE_URL): ${errorMessage(err)}`);
  }
  const js = jetstream(nc);
  const publisher = new JetStreamPublisher(nc);
  const jsm = await jetstreamManager(nc);
  const domain = (name: string): string => `${id}_${name}`;
  const dlq: DlqConfig = { stream: `${id.toUpperCase()}_DLQ`, subjectPrefix: `${id}_dlq` };
  const fullDomains = domains.map(domain);
  const splitDomains = (options.commandStreams ?? []).map(domain);
  await ensureStreams(jsm, fullDomains, { dlq, commandStreams: splitDomains });
  const schema = `${id}_bus`;
  await ensureBusTables(pool, schema);
  return {
    nc,
    js,
    publisher,
    jsm,
    pool,
    natsUrl,
    databaseUrl,
    schema,
    domain,
    stream: (name) => streamName(domain(name)),
    dlq,
    async cleanup() {
      await deleteStreams(jsm, [...fullDomains.map(streamName), ...splitDomains.map(commandStreamName), dlq.stream]).catch(() => undefined);
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
      await pool.end();
      publisher.close();
      await nc.close();
    },
  };
}

/** Every message currently in a stream, in stream order. */
export async function readStream(jsm: JetStreamManager, stream: string): Promise<StoredMsg[]> {
  const { state } = await jsm.streams.info(stream);
  const out: StoredMsg[] = [];
  if (state.messages === 0) return out;
  for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (m) out.push(m);
  }
  return out;
}

/**
 * The env's publisher for handlers that name their real subjects (`payment.evt.charged`):
 * publishes `<name>.…` to the env's `<domain(name)>.…` instead, so that it lands in the env's stream.
 */
export function publisherInto(env: Pick<BusTestEnv, "publisher" | "domain">, name: string): StreamPublisher {
  return {
    publish: (subject, payload, options) => env.publisher.publish(subject.startsWith(`${name}.`) ? `${env.domain(name)}${subject.slice(name.length)}` : subject, payload, options),
  };
}

/** A bus message read from a stream: a stored message, or one entry of a stored bundle. */
export interface StoredBusMessage {
  subject: string;
  /** The stream sequence of the message that carries it. */
  seq: number;
  header: MsgHdrs;
  data: Uint8Array;
}

/** The bus messages in a stream, in stream order, bundles expanded into their entries. */
export async function readBusMessages(jsm: JetStreamManager, stream: string): Promise<StoredBusMessage[]> {
  return (await readStream(jsm, stream)).flatMap((m) => {
    const entries = receivedEntries(m.header, m.data, { stream, seq: m.seq });
    return entries.map((e) => ({ subject: m.subject, seq: m.seq, header: e.headers ?? natsHeaders(), data: e.payload }));
  });
}

/** The events (`<domain>.evt.…`) in a stream, in stream order: subject, key and trace id. */
export async function eventsIn(jsm: JetStreamManager, stream: string): Promise<Array<{ subject: string; key: string; traceId: string }>> {
  return (await readBusMessages(jsm, stream))
    .filter((m) => m.subject.includes(".evt."))
    .map((m) => ({ subject: m.subject, key: m.header.get(Header.key), traceId: m.header.get("traceparent").split("-")[1] ?? "" }));
}

/** A counter's value for these labels (0 while never incremented); a deferred counter is named, as the registry reads it. */
export async function counted(counter: Counter<string> | string, labels: Record<string, string>): Promise<number> {
  const metric = typeof counter === "string" ? register.getSingleMetric(counter) : counter;
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([name, value]) => v.labels[name] === value))?.value ?? 0;
}

/** Polls `check` until it returns true (or throws after `timeoutMs`). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `db`, recording the text of every statement sent through it (to count round trips) in `statements`. */
export function recordingStatements(db: Pick<pg.Pool, "query">, statements: string[] = []): { db: Pick<pg.Pool, "query">; statements: string[] } {
  const query = ((config: string | pg.QueryConfig, values?: unknown[]) => {
    statements.push(typeof config === "string" ? config : config.text);
    return db.query(config, values);
  }) as pg.Pool["query"];
  return { db: { query }, statements };
}

/**
 * Runs `work` in a transaction of `db`, given the transaction's connection recording its
 * statements (after `before`, which is not recorded); returns what `work` returned and them.
 */
export async function inRecordedTransaction<T>(
  db: { transaction<R>(fn: (tx: pg.PoolClient) => Promise<R>): Promise<R> },
  work: (tx: Pick<pg.Pool, "query">) => Promise<T>,
  before: (tx: pg.PoolClient) => Promise<unknown> = async () => undefined,
): Promise<{ result: T; statements: string[] }> {
  const statements: string[] = [];
  const result = await db.transaction(async (tx) => {
    await before(tx);
    return work(recordingStatements(tx, statements).db);
  });
  return { result, statements };
}

/** `pool`, recording the text of every statement sent through it or a connection it lends. */
export function recordingPool(pool: pg.Pool): { db: Pick<pg.Pool, "query"> & Connections; statements: string[] } {
  const { db, statements } = recordingStatements(pool);
  const lend = async () => {
    const client = await pool.connect();
    return { query: recordingStatements(client, statements).db.query as pg.PoolClient["query"], release: (error?: Error | boolean) => client.release(error) };
  };
  return { db: { ...db, connect: lend }, statements };
}

/** W3C trace context propagation over async calls, as the services' telemetry sets it up. */
export function useTraceContext(): void {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

/**
 * A TCP relay in front of NATS that a test can cut and restore, to take a client's connection
 * away (the server and every other client stay up). Connect the client to `url`.
 */
export interface NatsLink {
  url: string;
  /** Drops every relayed connection and refuses new ones. */
  cut(): Promise<void>;
  /** Accepts connections again, on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function natsLink(natsUrl = NATS_URL): Promise<NatsLink> {
  const target = new URL(natsUrl.replace(/^nats:/, "tcp:"));
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const open = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const relay = createServer((client) => {
        const upstream = connectTcp(Number(target.port || 4222), target.hostname);
        const drop = (): void => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        for (const socket of [client, upstream]) socket.on("error", drop).on("close", drop);
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
      });
      relay.once("error", reject).listen(port, "127.0.0.1", () => {
        const address = relay.address();
        if (address && typeof address === "object") port = address.port;
        server = relay;
        resolve();
      });
    });
  const shut = async (): Promise<void> => {
    const closing = server;
    server = undefined;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()));
  };
  await open();
  return { url: `nats://127.0.0.1:${port}`, cut: shut, restore: open, close: shut };
}
