import type { JetStreamManager } from "@nats-io/jetstream";
import type { Gauge } from "prom-client";
import { gauge } from "../metrics.js";
import { streamWithConsumers, unfinished } from "./backlog.js";
import { isMissing } from "./missing.js";

export interface ConsumerUsage {
  consumer: string;
  /** Messages not yet acknowledged: waiting in the stream, and delivered and in hand. */
  pending: number;
}

export interface StreamUsage {
  stream: string;
  bytes: number;
  /** The stream's bound in bytes (-1: none). */
  maxBytes: number;
  consumers: ConsumerUsage[];
}

/** What the streams hold, and how far behind each of their durable consumers is; a stream deleted meanwhile is left out. */
export async function readStreamUsage(jsm: JetStreamManager, streams: readonly string[]): Promise<StreamUsage[]> {
  const usage: StreamUsage[] = [];
  for (const stream of streams) {
    try {
      const { info, consumers } = await streamWithConsumers(jsm, stream);
      usage.push({ stream, bytes: info.state.bytes, maxBytes: info.config.max_bytes, consumers: consumers.map((c) => ({ consumer: c.name, pending: unfinished(c) })) });
    } catch (err) {
      if (!isMissing(err, "stream")) throw err;
    }
  }
  return usage;
}

/** Where the gauges read from when scraped: the process's bus, once connected. */
let source: (() => Promise<StreamUsage[]>) | undefined;
/** One read serves the three gauges of a scrape. */
let lastRead: { at: number; usage: Promise<StreamUsage[]> } | undefined;

function usageForScrape(): Promise<StreamUsage[]> {
  const now = Date.now();
  if (!source) return Promise.resolve([]);
  if (!lastRead || now - lastRead.at > 1_000) lastRead = { at: now, usage: source().catch(() => []) };
  return lastRead.usage;
}

function scrapedGauge<L extends string>(name: string, help: string, labelNames: readonly L[], fill: (gauge: Gauge<L>, usage: StreamUsage[]) => void): void {
  gauge(name, help, labelNames, async function collect() {
    const usage = await usageForScrape();
    this.reset();
    fill(this, usage);
  });
}

scrapedGauge("orderflow_bus_stream_bytes", "Bytes each saga stream holds in JetStream, read when scraped", ["stream"], (gauge, usage) => {
  for (const s of usage) gauge.set({ stream: s.stream }, s.bytes);
});
scrapedGauge("orderflow_bus_stream_bytes_limit", "The most bytes each saga stream holds (NATS_STREAM_MAX_BYTES; -1: no bound): at it the stream refuses new messages", ["stream"], (gauge, usage) => {
  for (const s of usage) gauge.set({ stream: s.stream }, s.maxBytes);
});
scrapedGauge("orderflow_bus_consumer_pending", "Messages of a saga stream its durable consumer has not yet acknowledged (waiting, or delivered and in hand), read when scraped", ["stream", "consumer"], (gauge, usage) => {
  for (const s of usage) for (const c of s.consumers) gauge.set({ stream: s.stream, consumer: c.consumer }, c.pending);
});

/**
 * Has /metrics report the streams' sizes and bounds and their consumers' backlogs, read from
 * JetStream when scraped (no timer; a read that fails or takes over `timeoutMs` leaves them
 * out of that scrape). Every replica reports the same figures: take the max.
 */
export function exportStreamUsage(jsm: JetStreamManager, streams: readonly string[], timeoutMs = 2_000): () => void {
  const read = (): Promise<StreamUsage[]> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("stream usage read timed out")), timeoutMs);
    });
    return Promise.race([readStreamUsage(jsm, streams), timeout]).finally(() => clearTimeout(timer));
  };
  source = read;
  lastRead = undefined;
  return () => {
    if (source === read) source = undefined;
  };
}
