import { isMessage } from "@bufbuild/protobuf";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { Pool, PoolClient } from "pg";
import { type OrderConcluded, OrderConcludedSchema } from "../../gen/orderflow/order/v1/events_pb.js";
import { type BusConsumer, type Delivery, type DlqConfig, startConsumer } from "../platform/bus/index.js";
import { sagaRoutes } from "../platform/saga-routes.js";
import type { Logger } from "../platform/logger.js";
import { notificationMetrics } from "./metrics.js";
import { outcomeKind, recordOutcomes } from "./store.js";

export interface OrderEventsConsumerOptions {
  js: JetStreamClient;
  /** Primary pool whose search_path starts with the notification schema. */
  pool: Pool;
  schema: string;
  logger: Logger;
  /** Domain of the order events (default `order`: stream ORDER, subjects order.evt.>); tests use their own. */
  domain?: string;
  dlq?: DlqConfig;
  batchSize?: number;
}

/**
 * Collects a batch's order outcomes: each OrderConcluded becomes one notification, all of
 * them written by one statement at the end of the consumer's batch transaction. Other order
 * events are not for us and are skipped; an OrderConcluded that is not an outcome fails its
 * message at once.
 */
class OutcomeBatch {
  private readonly events: OrderConcluded[] = [];

  clear(): void {
    this.events.length = 0;
  }

  add(delivery: Delivery): void {
    if (!isMessage(delivery.message, OrderConcludedSchema)) return;
    outcomeKind(delivery.message); // a status that is no outcome fails this message alone
    this.events.push(delivery.message);
  }

  async write(tx: PoolClient): Promise<void> {
    const events = this.events.splice(0);
    const rows = await recordOutcomes(tx, events);
    // Counted before the commit; a batch that then fails to commit is retried message by
    // message, so the counters can run slightly ahead of the table.
    for (const row of rows) {
      if (row) notificationMetrics.recorded.inc({ kind: row.kind });
      else notificationMetrics.duplicates.inc();
    }
  }
}

/**
 * Consumes order.evt.> from stream ORDER (durable `notification-order-events`), without an
 * inbox: a notification is unique per order and kind, so a redelivered event adds nothing.
 */
export function startOrderEventsConsumer(options: OrderEventsConsumerOptions): Promise<BusConsumer> {
  const domain = options.domain ?? "order";
  const batch = new OutcomeBatch();
  return startConsumer({
    js: options.js,
    pool: options.pool,
    schema: options.schema,
    inbox: false,
    ...sagaRoutes.notifications(domain),
    logger: options.logger,
    ...(options.dlq ? { dlq: options.dlq } : {}),
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    beforeBatch: async () => batch.clear(),
    handle: async (delivery) => batch.add(delivery),
    afterBatch: (tx) => batch.write(tx),
  });
}
