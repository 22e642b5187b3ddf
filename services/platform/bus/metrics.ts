import { counter, deferredCounter, gauge, histogram } from "../metrics.js";

/** Bus metrics, registered once in prom-client's default registry. */

export const busMetrics = {
  outboxBacklog: gauge("orderflow_outbox_backlog", "Unpublished outbox rows", ["schema"]),
  outboxPublished: counter("orderflow_outbox_published_total", "Outbox rows published to JetStream", ["schema"]),
  outboxDuplicates: counter("orderflow_outbox_publish_duplicates_total", "Outbox publishes JetStream reported as duplicates (re-publish after a crash)", ["schema"]),
  /** outcome: processed | duplicate | retried | dead_lettered */
  messages: deferredCounter("orderflow_bus_messages_total", "Messages handled by bus consumers, by outcome", ["consumer", "outcome"]),
  redeliveries: counter("orderflow_bus_redeliveries_total", "Messages received with a delivery count above 1", ["consumer"]),
  progressSignals: counter("orderflow_bus_progress_signals_total", "Ack waits restarted (working) for messages a consumer held longer than a quarter of it", ["consumer"]),
  deadLetters: counter("orderflow_bus_dead_letters_total", "Messages sent to the dead-letter stream", ["consumer", "reason"]),
  batchSize: histogram("orderflow_bus_batch_size", "Bus messages handed to the handlers per consumer batch (a bundle counts its entries)", ["consumer"], [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]),
  batchSeconds: histogram("orderflow_bus_batch_seconds", "Time to process one consumer batch", ["consumer"], [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]),
};
