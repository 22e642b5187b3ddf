import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Counter, Gauge, Histogram, register } from "prom-client";

let defaultsCollected = false;

/**
 * Node process metrics, once per process. The event-loop delay histogram samples
 * with a timer; prom-client's default of 10 ms wakes an idle process 100 times a
 * second, which on a small shared node costs more CPU than the metric is worth.
 */
export function collectProcessMetrics(eventLoopResolutionMs: number): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  collectDefaultMetrics({ eventLoopMonitoringPrecision: eventLoopResolutionMs });
}

/** Reuses a metric already registered under the name (tests start several servers in one process). */
export function counter<L extends string>(name: string, help: string, labelNames: readonly L[], known: ReadonlyArray<Readonly<Record<L, string>>> = []): Counter<L> {
  const metric = (register.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames });
  // Exported at 0 from the start: rate() and increase() count an increment only from a sample before it.
  for (const labels of known) metric.inc(labels, 0);
  return metric;
}

/** Reuses a gauge already registered under the name, like `counter`; `collect` (optional) fills it when scraped. */
export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[], collect?: (this: Gauge<L>) => Promise<void> | void): Gauge<L> {
  const existing = register.getSingleMetric(name);
  return existing instanceof Gauge ? (existing as Gauge<L>) : new Gauge({ name, help, labelNames, ...(collect ? { collect } : {}) });
}

/** Increments of a counter, summed in plain numbers and handed to prom-client on a scrape. */
export interface DeferredCounter<L extends string> {
  /** `labels` keys the sum by identity: pass one object per label set, made once. */
  inc(labels: Readonly<Record<L, string>>, by?: number): void;
}

/**
 * A counter for hot paths. prom-client's `inc` checks and hashes the labels on every call
 * (about a microsecond, a few per cent of a cached GetOrder); here a call adds to a number,
 * and the sums reach prom-client when the registry is read. Label sets are few (a method and
 * a status code), so the pending sums stay small; past `maxPending` they are handed over at once.
 */
export function deferredCounter<L extends string>(name: string, help: string, labelNames: readonly L[], maxPending = 1_000): DeferredCounter<L> {
  const registered = register.getSingleMetric(name) as Counter<L> | undefined;
  if (registered) return { inc: (labels, by = 1) => registered.inc(labels, by) };
  const pending = new Map<Readonly<Record<L, string>>, number>();
  const flush = () => {
    for (const [labels, by] of pending) metric.inc(labels, by);
    pending.clear();
  };
  const metric: Counter<L> = new Counter({ name, help, labelNames, collect: flush });
  return {
    inc(labels, by = 1) {
      pending.set(labels, (pending.get(labels) ?? 0) + by);
      if (pending.size > maxPending) flush();
    },
  };
}

/** One frozen label set per key, made on first use: what a deferredCounter's sums are keyed by. */
export function labelSets<K, L extends string>(make: (key: K) => Record<L, string>): (key: K) => Readonly<Record<L, string>> {
  const made = new Map<K, Readonly<Record<L, string>>>();
  return (key) => {
    let labels = made.get(key);
    if (!labels) made.set(key, (labels = Object.freeze(make(key))));
    return labels;
  };
}

export function histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L> {
  return (register.getSingleMetric(name) as Histogram<L> | undefined) ?? new Histogram({ name, help, labelNames, buckets });
}

export const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Serves the registry at /metrics on its own port. */
export async function startMetricsServer(port: number, host = "0.0.0.0"): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    register.metrics().then(
      (body) => res.writeHead(200, { "content-type": register.contentType }).end(body),
      (error: unknown) => res.writeHead(500).end(String(error)),
    );
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, host, resolve));
  return server;
}
