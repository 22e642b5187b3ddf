import { InventoryService } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { CommitStockSchema, ReleaseStockSchema, ReserveStockSchema } from "../../gen/orderflow/inventory/v1/saga_pb.js";
import { OrderConcludedSchema } from "../../gen/orderflow/order/v1/events_pb.js";
import { connectBus } from "../platform/bus-runtime.js";
import { loadConfig } from "../platform/config.js";
import { onBatch, startParticipant } from "../platform/saga-participant.js";
import { commitConfirmed, commitStock, releaseAll, reserveAll } from "./reservations.js";
import type { ServiceContext, ServiceParts } from "../platform/host.js";
import { migrateServiceSchema, openServiceDatabase } from "../platform/service-database.js";
import { bind } from "../platform/rpc/binding.js";
import { inventoryApi } from "./api.js";
import { inventoryConfigShape } from "./config.js";
import { seedDemoCatalogue } from "./demo-catalogue.js";
import { ProductStore } from "./store.js";
import { sagaRoutes } from "../platform/saga-routes.js";

export const schema = "inventory";

export function migrate(context: ServiceContext): Promise<void> {
  return migrateServiceSchema(context, loadConfig(inventoryConfigShape), schema);
}

export async function start(context: ServiceContext): Promise<ServiceParts> {
  const config = loadConfig(inventoryConfigShape);
  const db = await openServiceDatabase(context, config, schema);
  if (config.SEED_DEMO_DATA) context.logger.info("demo catalogue seeded", { inserted: await seedDemoCatalogue(db.primary) });
  const store = new ProductStore(db);
  const bus = await connectBus({ nats: config, name: context.name, logger: context.logger });
  const workers = await startParticipant({
    bus,
    db,
    schema,
    domain: "inventory",
    logger: context.logger,
    // Releases first: a batch's reservations then find the stock its releases gave back.
    handlers: Object.fromEntries([onBatch(ReleaseStockSchema, releaseAll), onBatch(ReserveStockSchema, reserveAll), onBatch(CommitStockSchema, commitStock)]),
    events: [{ route: sagaRoutes.stockCommits(), handlers: Object.fromEntries([onBatch(OrderConcludedSchema, commitConfirmed)]) }],
  });
  return {
    rpc: [bind(InventoryService, inventoryApi(store))],
    checks: [{ name: "postgres", check: () => db.ping() }, bus.check],
    workers,
    close: async () => {
      await bus.close();
      await db.close();
    },
  };
}
