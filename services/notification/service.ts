import { NotificationService } from "../../gen/orderflow/notification/v1/notification_pb.js";
import { connectBus } from "../platform/bus-runtime.js";
import { loadConfig } from "../platform/config.js";
import type { ServiceContext, ServiceParts } from "../platform/host.js";
import { migrateServiceSchema, openServiceDatabase } from "../platform/service-database.js";
import { bind } from "../platform/rpc/binding.js";
import { notificationApi } from "./api.js";
import { notificationConfigShape } from "./config.js";
import { startOrderEventsConsumer } from "./consumer.js";
import { announceOverNats, NotificationHub } from "./hub.js";
import { RecentNotifications } from "./recent.js";
import { startNotificationRetention } from "./retention.js";
import { NotificationStore } from "./store.js";

export const schema = "notification";

export function migrate(context: ServiceContext): Promise<void> {
  return migrateServiceSchema(context, loadConfig(notificationConfigShape), schema);
}

export async function start(context: ServiceContext): Promise<ServiceParts> {
  const config = loadConfig(notificationConfigShape);
  const db = await openServiceDatabase(context, config, schema);
  const store = new NotificationStore(db);
  const bus = await connectBus({ nats: config, name: context.name, logger: context.logger });
  const recent = new RecentNotifications(store);
  await recent.start();
  const hub = new NotificationHub({ nc: bus.nc, logger: context.logger, createdSince: (customers, since) => recent.createdSince(customers, since) });
  const stopAnnouncing = announceOverNats(bus.nc);
  const consumer = await startOrderEventsConsumer({ js: bus.js, pool: db.background, schema, logger: context.logger });
  const stopRetention = startNotificationRetention({ db, retentionDays: config.NOTIFICATION_RETENTION_DAYS, logger: context.logger });
  return {
    rpc: [bind(NotificationService, notificationApi({ store, hub }))],
    checks: [{ name: "postgres", check: () => db.ping() }, bus.check],
    workers: [consumer],
    endStreams: () => hub.endStreams(),
    close: async () => {
      stopRetention();
      hub.close();
      stopAnnouncing();
      await bus.close();
      await db.close();
    },
  };
}
