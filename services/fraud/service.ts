import { FraudService } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { connectBus } from "../platform/bus-runtime.js";
import { loadConfig } from "../platform/config.js";
import type { ServiceContext, ServiceParts } from "../platform/host.js";
import { bind } from "../platform/rpc/binding.js";
import { fraudApi } from "./api.js";
import { FraudAssessor } from "./assessor.js";
import { fraudConfigShape } from "./config.js";
import type { FraudRules } from "./rules.js";
import { startFraudSaga } from "./saga.js";
import { connectRedis, redisReady } from "../platform/redis.js";
import { FraudStore } from "./store.js";

/** fraud has no database. */
export async function migrate(_context: ServiceContext): Promise<void> {}

export async function start(context: ServiceContext): Promise<ServiceParts> {
  const config = loadConfig(fraudConfigShape);
  const rules: FraudRules = {
    maxOrderAmountMinor: config.FRAUD_MAX_ORDER_AMOUNT_MINOR,
    velocityMaxOrders: config.FRAUD_VELOCITY_MAX_ORDERS,
    velocityWindowSeconds: config.FRAUD_VELOCITY_WINDOW_SECONDS,
    blockedCustomers: config.FRAUD_BLOCKED_CUSTOMERS,
  };
  // Redis down at start is fine: after one connect attempt's wait fraud starts, failing open until the client reconnects.
  const redis = connectRedis(config.REDIS_URL, context.logger, "velocity checks are skipped and decisions not cached");
  const assessor = new FraudAssessor(new FraudStore(redis, config.FRAUD_REDIS_PREFIX), rules, context.logger);
  const [bus] = await Promise.all([
    connectBus({ nats: config, name: context.name, logger: context.logger }),
    redisReady(redis),
  ]);
  const consumer = await startFraudSaga({ js: bus.js, publisher: bus.publisher, assessor, logger: context.logger });
  context.logger.info("fraud rules", { ...rules, maxOrderAmountMinor: rules.maxOrderAmountMinor.toString(), blockedCustomers: rules.blockedCustomers.size });
  return {
    rpc: [bind(FraudService, fraudApi(assessor))],
    // Readiness is NATS only: Redis down makes fraud less strict, never unavailable.
    checks: [bus.check],
    workers: [consumer],
    close: async () => {
      await bus.close();
      redis.disconnect();
    },
  };
}
