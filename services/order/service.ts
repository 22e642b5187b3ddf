import { InventoryService } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { OrderService, OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { OutboxRelay, startConsumer, startStreamTrimming } from "../platform/bus/index.js";
import { sagaParticipants, sagaRoutes, sagaStreams } from "../platform/saga-routes.js";
import { connectBus } from "../platform/bus-runtime.js";
import { loadConfig } from "../platform/config.js";
import type { ServiceContext, ServiceParts } from "../platform/host.js";
import { migrateServiceSchema, openServiceDatabase } from "../platform/service-database.js";
import { bind } from "../platform/rpc/binding.js";
import { serviceClient } from "../platform/rpc/client.js";
import { connectRedis, redisReady } from "../platform/redis.js";
import { orderApi } from "./api.js";
import { OrderCache } from "./cache.js";
import { LocalOrderCopies } from "./local-copies.js";
import { Catalogue } from "./catalogue.js";
import { startOrderRetention } from "./retention.js";
import { CustomerRateLimit } from "./rate-limit.js";
import { orderConfigShape } from "./config.js";
import { SagaAdmission } from "./saga/admission.js";
import { cancelOrder } from "./saga/cancel.js";
import { DeadlineWatcher, queuedInAny, queuedInOutbox, queuedOnBus } from "./saga/deadlines.js";
import { InFlightOrders } from "./saga/in-flight.js";
import { sagaStart } from "./saga/start.js";
import { ReplyApplier } from "./saga/replies.js";
import { ordersSchema } from "./saga/state.js";
import { OrderWatch } from "./saga/watch.js";
import { OrderStore } from "./store.js";

const schema = ordersSchema;
/** The order service writes the saga's commands into its outbox. */
const schemaOptions = { busTables: true };

export function migrate(context: ServiceContext): Promise<void> {
  return migrateServiceSchema(context, loadConfig(orderConfigShape), schema, schemaOptions);
}

export async function start(context: ServiceContext): Promise<ServiceParts> {
  const config = loadConfig(orderConfigShape);
  const db = await openServiceDatabase(context, config, schema, schemaOptions);
  const inventory = serviceClient(InventoryService, config.INVENTORY_URL, config.INVENTORY_TIMEOUT_MS);
  const store = new OrderStore(db);
  const timing = { stepTimeoutMs: config.SAGA_STEP_TIMEOUT_MS };
  const bus = await connectBus({ nats: config, name: context.name, logger: context.logger });
  const relay = new OutboxRelay({ pool: db.background, schema, publisher: bus.publisher, retentionMs: config.OUTBOX_RETENTION_MS, logger: context.logger }).start();
  const inFlight = new InFlightOrders();
  const applier = new ReplyApplier(db.background, timing, schema, inFlight);
  const replies = await Promise.all(
    sagaParticipants.map((domain) =>
      startConsumer({
        js: bus.js,
        ...sagaRoutes.replies(domain),
        logger: context.logger,
        // A batch's replies go to the applier together, which writes them as one statement;
        // the next batch is taken while that statement runs.
        parallel: true,
        batchesInFlight: 2,
        // Replies come bundled: what nats.js holds ahead, unsignalled, stays a few bundles.
        prefetch: 8,
        handle: async (delivery) => {
          await applier.apply(delivery.message);
        },
      }),
    ),
  );
  const admission = await new SagaAdmission(db, { maxInProgress: config.SAGA_MAX_ORDERS_IN_PROGRESS }, context.logger).start();
  const deadlines = new DeadlineWatcher(db, { ...timing, maxAttempts: config.SAGA_STEP_MAX_ATTEMPTS, queued: queuedInAny(queuedOnBus(bus.jsm), queuedInOutbox(db)) }, context.logger).start();
  const watch = new OrderWatch(db, bus.nc);
  // The orchestrator publishes to every saga stream: it keeps them trimmed to their unfinished
  // work, from the replica whose relay leads.
  const stopTrimming = startStreamTrimming({ jsm: bus.jsm, streams: sagaStreams, active: () => relay.isLeader, logger: context.logger });
  const stopRetention = startOrderRetention({ db, retentionDays: config.ORDER_RETENTION_DAYS, active: () => relay.isLeader, logger: context.logger });
  const redis = connectRedis(config.REDIS_URL, context.logger, "GetOrder is served from Postgres and the per-customer rate limit is off");
  // Built even with ORDER_LOCAL_CACHE_MS=0: this replica's cancels still tell the others to drop their copies.
  const localCopies = new LocalOrderCopies(bus.nc, { ttlMs: config.ORDER_LOCAL_CACHE_MS, maxEntries: config.ORDER_LOCAL_CACHE_ENTRIES });
  await Promise.all([localCopies.ready(), redisReady(redis)]);
  const cache = new OrderCache(redis, { local: localCopies });
  const api = orderApi({
    store,
    catalogue: new Catalogue(inventory, { cacheMs: config.CATALOGUE_CACHE_MS, logger: context.logger }),
    watch,
    sagaStart: sagaStart({ ...timing, reserveDuringFraudCheck: config.SAGA_RESERVE_DURING_FRAUD_CHECK, chargeDuringChecks: config.SAGA_CHARGE_DURING_CHECKS }, inFlight),
    cache,
    admission,
    rateLimit: new CustomerRateLimit(redis, config.ORDER_RATE_LIMIT_PER_MINUTE),
    cancel: (tx, orderId, reason) =>
      cancelOrder(tx, orderId, reason, timing, async (before) => {
        if (before.status === OrderStatus.CONFIRMED && !(await cache.invalidate(orderId, before.version + 1n))) {
          throw new ConnectError("cannot cancel a confirmed order while its cache (Redis, or NATS for the replicas' copies) is unreachable; retry shortly", Code.Unavailable);
        }
      }),
  });
  return {
    rpc: [bind(OrderService, api)],
    checks: [{ name: "postgres", check: () => db.ping() }, bus.check],
    workers: [watch, ...replies, deadlines, admission, relay, localCopies],
    endStreams: () => watch.endStreams(),
    close: async () => {
      stopTrimming();
      stopRetention();
      redis.disconnect();
      await bus.close();
      await db.close();
    },
  };
}
