// Where a saga step's work waits: the JetStream consumers' messages not yet acknowledged,
// sampled while the step runs. The consumer with the deepest queue is the stage that fell
// behind (its service, or what that service waits on).
import type { JetStreamManager } from "@nats-io/jetstream";
import { readStreamUsage } from "../services/platform/bus/stream-usage.js";
import { RECORDER } from "./stages.js";

export interface ConsumerQueue {
  stream: string;
  consumer: string;
  /** Most messages not yet acknowledged (waiting in the stream + delivered and in hand) in any sample. */
  peak: number;
  /** The same at the last sample. */
  atEnd: number;
}

/** Streams the bench itself creates (the JetStream ceiling), and dead letters: not stages of the saga. */
export const ignoredStreams = /^(DLQ|BENCH)/;

/** One sample: unacknowledged messages per consumer ("stream/consumer"), the bench's recording left out. */
export async function sampleQueues(jsm: JetStreamManager): Promise<Map<string, number>> {
  const streams: string[] = [];
  for await (const stream of jsm.streams.list()) if (!ignoredStreams.test(stream.config.name)) streams.push(stream.config.name);
  // A stream deleted since it was listed (tests tear theirs down beside the sampler) has no queue left.
  const usage = await readStreamUsage(jsm, streams);
  return new Map(usage.flatMap(({ stream, consumers }) => consumers.filter(({ consumer }) => consumer !== RECORDER).map(({ consumer, pending }) => [`${stream}/${consumer}`, pending] as const)));
}

/** Samples every `intervalMs` from `start` until `stop`, which returns the queues deepest first. */
export class QueueSampler {
  private readonly peaks = new Map<string, number>();
  private last = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<void> = Promise.resolve();
  private busy = false;
  private failures = 0;

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly intervalMs = 1_000,
  ) {}

  /** Resolves once the first sample is in. */
  async start(): Promise<this> {
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    await this.sample();
    return this;
  }

  /** The queues seen (deepest peak first), after one last sample; undefined when no sample succeeded. */
  async stop(): Promise<ConsumerQueue[] | undefined> {
    clearInterval(this.timer);
    await this.sampling;
    await this.sample();
    if (this.peaks.size === 0 && this.failures > 0) return undefined;
    return [...this.peaks]
      .map(([key, peak]) => {
        const [stream = "", consumer = ""] = key.split("/");
        return { stream, consumer, peak, atEnd: this.last.get(key) ?? 0 };
      })
      .sort((a, b) => b.peak - a.peak || a.consumer.localeCompare(b.consumer));
  }

  /** Takes a sample unless one is under way (a slow NATS skips samples rather than piling them up). */
  private sample(): Promise<void> {
    if (this.busy) return this.sampling;
    this.busy = true;
    this.sampling = (async () => {
      try {
        this.last = await sampleQueues(this.jsm);
        for (const [key, n] of this.last) this.peaks.set(key, Math.max(n, this.peaks.get(key) ?? 0));
      } catch {
        this.failures += 1;
      } finally {
        this.busy = false;
      }
    })();
    return this.sampling;
  }
}
