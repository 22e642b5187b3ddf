import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { isMissing } from "./missing.js";
import { commandStreamName, DEFAULT_DLQ, streamName, type DlqConfig } from "./names.js";
import { subjectWithin } from "./subjects.js";

export interface EnsureStreamsOptions {
  /** Dead-letter stream (default `DLQ` capturing `dlq.>`). */
  dlq?: DlqConfig;
  /** JetStream de-duplication window for `Nats-Msg-Id` (default 2 minutes). */
  duplicateWindowMs?: number;
  /** Maximum age of a message in the domain streams (default 7 days; 0 = unlimited). */
  maxAgeMs?: number;
  /** Maximum age of a dead letter (default 0 = kept until replayed or deleted). */
  dlqMaxAgeMs?: number;
  /** Replicas per stream (default 1; 3 on a clustered NATS). */
  replicas?: number;
  /**
   * Most bytes each stream holds, the dead letters' too (default -1: no bound), so that the
   * streams cannot fill the server's store, where every stream would refuse. Trimmed
   * (`startStreamTrimming`), a saga stream holds little more than what its consumers have yet
   * to finish. At the bound a domain's stream refuses new messages and keeps all it holds (the
   * publisher keeps what was refused and sends it again); the dead letters drop their oldest.
   */
  maxBytes?: number;
  /**
   * Domains whose commands (`<domain>.cmd.>`) have a stream of their own (`<DOMAIN>_COMMANDS`),
   * their domain's stream capturing `<domain>.evt.>`: a participant holds a command until its
   * reply is stored, which, were both in one stream, refusing at the bound would wait on for good.
   * A domain's stream from before the split is narrowed, and its consumers of what it no longer
   * captures are deleted (`EnsuredStreams.retired`): what they had not finished, the saga's step
   * deadlines send again.
   */
  commandStreams?: readonly string[];
}

/** A consumer deleted because its stream no longer captures what it reads. */
export interface RetiredConsumer {
  stream: string;
  consumer: string;
  filterSubject: string;
}

export interface EnsuredStreams {
  retired: RetiredConsumer[];
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Creates or updates, idempotently, one stream per domain (`order` -> stream `ORDER`, subjects
 * `order.>`), a second one for the commands of `commandStreams`, and the dead-letter stream.
 * File storage, limits retention: what a stream's consumers have finished goes when it is
 * trimmed (`startStreamTrimming`), not as they acknowledge it (interest retention), which
 * nats-server 2.9.10 was seen to lose unacknowledged messages under across a restart. Safe to
 * call from every replica at start (a concurrent create is retried as update).
 */
export async function ensureStreams(jsm: JetStreamManager, domains: readonly string[], opts: EnsureStreamsOptions = {}): Promise<EnsuredStreams> {
  const dlq = opts.dlq ?? DEFAULT_DLQ;
  const maxBytes = opts.maxBytes ?? -1;
  const common = {
    duplicate_window: nanos(opts.duplicateWindowMs ?? 2 * 60 * 1000),
    num_replicas: opts.replicas ?? 1,
  };
  const domainStream = (name: string, subject: string): StreamSpec => ({
    ...baseConfig(maxBytes, DiscardPolicy.New),
    ...common,
    name,
    subjects: [subject],
    max_age: nanos(opts.maxAgeMs ?? 7 * DAY_MS),
  });
  const split = new Set(opts.commandStreams ?? []);
  // A domain's stream is narrowed before its commands' stream is created: their subjects may not overlap.
  const configs: StreamSpec[] = domains.flatMap((domain) =>
    split.has(domain)
      ? [domainStream(streamName(domain), `${domain}.evt.>`), domainStream(commandStreamName(domain), `${domain}.cmd.>`)]
      : [domainStream(streamName(domain), `${domain}.>`)],
  );
  configs.push({
    // A refused dead letter would be redelivered until JetStream gives up on it, then trimmed
    // away unrecorded: the dead letters drop their oldest.
    ...baseConfig(maxBytes, DiscardPolicy.Old),
    ...common,
    name: dlq.stream,
    subjects: [`${dlq.subjectPrefix}.>`],
    max_age: nanos(opts.dlqMaxAgeMs ?? 0),
  });
  for (const config of configs) await ensureStream(jsm, config);
  const retired: RetiredConsumer[] = [];
  for (const config of configs) retired.push(...(await retireStrandedConsumers(jsm, config)));
  return { retired };
}

/** Deletes the consumers of a stream whose filter the stream no longer captures: they would never get another message, yet hold back its trimming. */
async function retireStrandedConsumers(jsm: JetStreamManager, config: StreamSpec): Promise<RetiredConsumer[]> {
  const subjects = config.subjects ?? [];
  const retired: RetiredConsumer[] = [];
  for await (const consumer of jsm.consumers.list(config.name)) {
    const filterSubject = consumer.config.filter_subject;
    if (!filterSubject || subjects.some((subject) => subjectWithin(filterSubject, subject))) continue;
    try {
      await jsm.consumers.delete(config.name, consumer.name);
    } catch (err) {
      // Another replica retired it first.
      if (!isMissing(err, "consumer")) throw err;
    }
    retired.push({ stream: config.name, consumer: consumer.name, filterSubject });
  }
  return retired;
}

type StreamSpec = Partial<StreamConfig> & { name: string };

function baseConfig(maxBytes: number, discard: DiscardPolicy): Partial<StreamConfig> {
  // Only fields nats-server 2.9 knows; everything else keeps the server default.
  return { retention: RetentionPolicy.Limits, storage: StorageType.File, discard, allow_direct: true, max_bytes: maxBytes };
}

async function ensureStream(jsm: JetStreamManager, config: StreamSpec): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await jsm.streams.info(config.name);
    } catch (err) {
      if (!isMissing(err, "stream")) throw err;
      try {
        await jsm.streams.add(config);
        return;
      } catch (addErr) {
        // Another replica created it between our info and add: update instead.
        if (attempt < 2) continue;
        throw addErr;
      }
    }
    const { name, ...update } = config;
    await jsm.streams.update(name, update);
    return;
  }
}

/** Deletes streams (tests and tooling). Missing streams are ignored. */
export async function deleteStreams(jsm: JetStreamManager, names: readonly string[]): Promise<void> {
  for (const name of names) {
    try {
      await jsm.streams.delete(name);
    } catch (err) {
      if (!isMissing(err, "stream")) throw err;
    }
  }
}
