import { create, isMessage } from "@bufbuild/protobuf";
import type { JetStreamClient } from "@nats-io/jetstream";
import { AssessFraudSchema, FraudAssessedSchema } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import { type BusConsumer, type Delivery, type DlqConfig, type OutboxWriter, startConsumer, type StreamPublisher } from "../platform/bus/index.js";
import { sagaRoutes } from "../platform/saga-routes.js";
import type { Logger } from "../platform/logger.js";
import type { FraudAssessor } from "./assessor.js";

export interface FraudSagaOptions {
  js: JetStreamClient;
  /** Where the FraudAssessed replies go. */
  publisher: StreamPublisher;
  assessor: FraudAssessor;
  logger: Logger;
  /** Subject domain (default `fraud`: fraud.cmd.assess on stream FRAUD_COMMANDS -> fraud.evt.assessed on FRAUD); tests use their own. */
  domain?: string;
  dlq?: DlqConfig;
  batchSize?: number;
}

/**
 * The reply's JetStream msgID: derived from the command's message id, so a redelivery of the
 * same command (fraud crashed before its ack) re-publishes a duplicate JetStream drops, while a
 * command the orchestrator re-sends (new message id, because it did not get the reply) is
 * answered again, as the saga contract asks. Keyed by order id alone, the re-sent command's
 * answer was dropped as a duplicate and the order waited for the consumer's ack wait (or timed out).
 */
export function replyId(orderId: string, commandId: string): string {
  return `fraud-assessed:${orderId}:${commandId}`;
}

/**
 * Handles one fraud.cmd.assess: assess (velocity recorded once per order, decision
 * stored for re-sends) and emit FraudAssessed, keyed by order id; the consumer publishes the
 * batch's replies to JetStream before it acks the commands.
 * Throws on anything it cannot handle; the consumer retries, then dead-letters.
 */
async function handleAssessCommand(delivery: Delivery, out: OutboxWriter, options: Pick<FraudSagaOptions, "assessor" | "domain">): Promise<void> {
  const domain = options.domain ?? "fraud";
  if (!isMessage(delivery.message, AssessFraudSchema)) throw new Error(`${delivery.subject}: expected ${AssessFraudSchema.typeName}, got ${delivery.type}`);
  const command = delivery.message;
  const assessment = await options.assessor.assessForSaga({
    orderId: command.orderId,
    customerId: command.customerId,
    total: command.total ? { amountMinor: command.total.amountMinor, currency: command.total.currency } : undefined,
  });
  const reply = create(FraudAssessedSchema, { orderId: command.orderId, decision: assessment.decision, reasons: assessment.reasons.map((r) => r.message) });
  out.emit({ subject: `${domain}.evt.assessed`, message: reply, key: command.orderId, id: replyId(command.orderId, delivery.id) });
}

/**
 * The saga participant: a durable pull consumer (`fraud-commands`) on stream FRAUD_COMMANDS
 * filtered to fraud.cmd.assess, without a Postgres inbox — idempotency comes from
 * Redis (velocity member = order id, decision SET NX) and the reply's deterministic msgID.
 */
export function startFraudSaga(options: FraudSagaOptions): Promise<BusConsumer> {
  const domain = options.domain ?? "fraud";
  return startConsumer({
    js: options.js,
    ...sagaRoutes.assessments(domain),
    parallel: true,
    logger: options.logger,
    ...(options.dlq ? { dlq: options.dlq } : {}),
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    // The batch's replies are published together (bundled per subject) once all are decided.
    publishEmitted: options.publisher,
    handle: (delivery, out) => handleAssessCommand(delivery, out, options),
  });
}
