import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_DLQ, ensureConsumersExist, ensureStreams, exportStreamUsage, JetStreamPublisher } from "./bus/index.js";
import type { NatsConfig } from "./config.js";
import type { Logger } from "./logger.js";
import type { DependencyCheck } from "./rpc/health.js";
import { sagaConsumerRoutes, sagaDomains, sagaParticipants, sagaStreams } from "./saga-routes.js";

export interface BusConnection {
  nc: NatsConnection;
  js: JetStreamClient;
  /** Publishes to the streams with all acks on one subscription (outbox relay, direct publishes). */
  publisher: JetStreamPublisher;
  jsm: JetStreamManager;
  /** Readiness: the connection is up. */
  check: DependencyCheck;
  close(): Promise<void>;
}

/**
 * Connects to NATS (reconnecting forever: a NATS restart delays messages, it
 * does not stop the service) and makes sure the saga's streams and consumers exist.
 */
export async function connectBus(options: { nats: NatsConfig; name: string; logger: Logger }): Promise<BusConnection> {
  // noAsyncTraces: no stack captured per request (each JetStream publish is one); at
  // hundreds of publishes a second the captured stacks cost several % of a service's CPU.
  const nc = await connect({ servers: options.nats.NATS_URL, name: options.name, maxReconnectAttempts: -1, reconnectTimeWait: 500, noAsyncTraces: true });
  let connected = true;
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type !== "disconnect" && status.type !== "reconnect") continue;
      connected = status.type === "reconnect";
      options.logger.warn(`nats ${status.type}`);
    }
  })();
  const jsm = await jetstreamManager(nc);
  const { retired } = await ensureStreams(jsm, sagaDomains, {
    replicas: options.nats.NATS_STREAM_REPLICAS,
    maxBytes: options.nats.NATS_STREAM_MAX_BYTES,
    commandStreams: sagaParticipants,
  });
  for (const { stream, consumer, filterSubject } of retired) {
    options.logger.warn("deleted a consumer whose messages moved to another stream; the saga's step deadlines re-send what it had not finished", { stream, consumer, filter_subject: filterSubject });
  }
  await ensureConsumersExist(jsm, sagaConsumerRoutes());
  const stopExporting = exportStreamUsage(jsm, [...sagaStreams, DEFAULT_DLQ.stream]);
  const publisher = new JetStreamPublisher(nc);
  return {
    nc,
    js: jetstream(nc),
    publisher,
    jsm,
    check: { name: "nats", check: () => Promise.resolve(connected && !nc.isClosed()) },
    close: () => {
      stopExporting();
      publisher.close();
      return nc.drain();
    },
  };
}
