import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { isMissing } from "./missing.js";
import { DEFAULT_DLQ, streamName, type DlqConfig } from "./names.js";

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
   * to finish. At the bound a stream drops its oldest messages, but those of `refusingDomains`.
   */
  maxBytes?: number;
  /**
   * Domains whose stream refuses new messages at its bound and keeps every message it holds
   * (the outbox keeps what was refused, and publishes it once there is room): those no consumer
   * of which publishes into the same stream while it holds one of its messages. A participant
   * holds a command until its reply, published into the command's stream, is stored: a full
   * participant stream that refused would wait on itself for good.
   */
  refusingDomains?: readonly string[];
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Creates or updates, idempotently, one stream per domain (`order` -> stream `ORDER`,
 * subjects `order.>`) plus the dead-letter stream. File storage, limits retention: what a
 * stream's consumers have finished goes when it is trimmed (`startStreamTrimming`), not as they
 * acknowledge it (interest retention), which nats-server 2.9.10 was seen to lose unacknowledged
 * messages under across a restart. Safe to call from every replica at start (a concurrent
 * create is retried as update).
 */
export async function ensureStreams(jsm: JetStreamManager, domains: readonly string[], opts: EnsureStreamsOptions = {}): Promise<void> {
  const dlq = opts.dlq ?? DEFAULT_DLQ;
  const duplicateWindow = nanos(opts.duplicateWindowMs ?? 2 * 60 * 1000);
  const replicas = opts.replicas ?? 1;
  const maxBytes = opts.maxBytes ?? -1;
  const refusing = new Set(opts.refusingDomains ?? []);
  const configs: StreamSpec[] = domains.map((domain) => ({
    ...baseConfig(maxBytes, refusing.has(domain) ? DiscardPolicy.New : DiscardPolicy.Old),
    name: streamName(domain),
    subjects: [`${domain}.>`],
    max_age: nanos(opts.maxAgeMs ?? 7 * DAY_MS),
    duplicate_window: duplicateWindow,
    num_replicas: replicas,
  }));
  configs.push({
    // A refused dead letter would be redelivered until JetStream gives up on it, then trimmed
    // away unrecorded: the dead letters drop their oldest.
    ...baseConfig(maxBytes, DiscardPolicy.Old),
    name: dlq.stream,
    subjects: [`${dlq.subjectPrefix}.>`],
    max_age: nanos(opts.dlqMaxAgeMs ?? 0),
    duplicate_window: duplicateWindow,
    num_replicas: replicas,
  });
  for (const config of configs) await ensureStream(jsm, config);
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
