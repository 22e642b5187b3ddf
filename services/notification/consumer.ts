import { isMessage } from "@bufbuild/protobuf";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { Pool, PoolClient } from "pg";
import { OrderConcludedSchema } from "../../gen/orderflow/order/v1/events_pb.js";
import { type BusConsumer, type Delivery, type DlqConfig, startConsumer, streamName } from "../platform/bus/index.js";
import type { Logger } from "../platform/logger.js";
import { notificationMetrics } from "./metrics.js";
import { recordOutcome } from "./store.js";

export interface OrderEventsConsumerOptions {
  js: JetStreamClient;
  /** Primary pool whose search_path starts with the notification schema. */
  pool: Pool;
  schema: string;
  /** NOTIFY channel for new notifications (createdChannel(schema)). */
  channel: string;
  logger: Logger;
  /** Domain of the order events (default `order`: stream ORDER, subjects order.evt.>); tests use their own. */
  domain?: string;
  dlq?: DlqConfig;
  batchSize?: number;
}

/**
 * Handles one order event inside the consumer's batch transaction (which also holds the
 * message's inbox row): an OrderConcluded becomes one notification. Other order events
 * are not for us and are skipped.
 */
export async function handleOrderEvent(delivery: Delivery, tx: PoolClient, channel: string): Promise<void> {
  if (!isMessage(delivery.message, OrderConcludedSchema)) return;
  const row = await recordOutcome(tx, delivery.message, channel);
  // Counted when the handler succeeds; a batch that then fails to commit is retried
  // message by message, so the counter can run slightly ahead of the table.
  if (row) notificationMetrics.recorded.inc({ kind: row.kind });
  else notificationMetrics.duplicates.inc();
}

/** Consumes order.evt.> from stream ORDER (durable `notification-order-events`) with the Postgres inbox. */
export function startOrderEventsConsumer(options: OrderEventsConsumerOptions): Promise<BusConsumer> {
  const domain = options.domain ?? "order";
  return startConsumer({
    js: options.js,
    pool: options.pool,
    schema: options.schema,
    stream: streamName(domain),
    durable: "notification-order-events",
    filterSubject: `${domain}.evt.>`,
    logger: options.logger,
    ...(options.dlq ? { dlq: options.dlq } : {}),
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    handle: (delivery, tx) => handleOrderEvent(delivery, tx, options.channel),
  });
}
