import { PaymentService } from "../../gen/orderflow/payment/v1/payment_pb.js";
import { connectBus } from "../platform/bus-runtime.js";
import { loadConfig } from "../platform/config.js";
import type { ServiceContext, ServiceParts } from "../platform/host.js";
import { migrateServiceSchema, openServiceDatabase } from "../platform/service-database.js";
import { bind } from "../platform/rpc/binding.js";
import { startParticipant } from "../platform/saga-participant.js";
import { paymentApi } from "./api.js";
import { paymentConfigShape } from "./config.js";
import { seedDemoWallets } from "./demo-wallets.js";
import { lockWalletsOf, paymentCommandHandlers } from "./saga.js";
import { PaymentStore } from "./store.js";

export const schema = "payment";

export function migrate(context: ServiceContext): Promise<void> {
  return migrateServiceSchema(context, loadConfig(paymentConfigShape), schema);
}

export async function start(context: ServiceContext): Promise<ServiceParts> {
  const config = loadConfig(paymentConfigShape);
  const db = await openServiceDatabase(context, config, schema);
  const store = new PaymentStore(db);
  if (config.SEED_DEMO_DATA) context.logger.info("demo wallets funded", { wallets: await seedDemoWallets(db) });
  const bus = await connectBus({ nats: config, name: context.name, logger: context.logger });
  // payment.cmd.> on stream PAYMENT_COMMANDS, durable "payment-commands"; replies, to PAYMENT, published once the batch has committed.
  const workers = await startParticipant({
    bus,
    db,
    schema,
    domain: "payment",
    logger: context.logger,
    consumer: { batchSize: config.PAYMENT_BATCH_SIZE },
    handlers: paymentCommandHandlers,
    beforeBatch: lockWalletsOf,
  });
  return {
    rpc: [bind(PaymentService, paymentApi(store))],
    checks: [{ name: "postgres", check: () => db.ping() }, bus.check],
    workers,
    close: async () => {
      await bus.close();
      await db.close();
    },
  };
}
