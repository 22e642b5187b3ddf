import type { ConsumerRoute } from "./bus/durable.js";
import { commandConsumerName, commandStreamName, streamName } from "./bus/names.js";

/** The domains the order service sends commands to and takes replies from. */
export const sagaParticipants = ["fraud", "inventory", "payment"] as const;

/** The saga's domains: a JetStream stream each for what they publish (plus the dead-letter stream). */
export const sagaDomains = ["order", ...sagaParticipants] as const;

/**
 * The saga's streams: ORDER (the orders' outcomes), FRAUD, INVENTORY, PAYMENT (the participants'
 * replies) and FRAUD_COMMANDS, INVENTORY_COMMANDS, PAYMENT_COMMANDS (the order service's commands
 * to them). No consumer publishes into the stream it reads, so each stream can refuse new
 * messages at its byte bound without waiting on itself.
 */
export const sagaStreams: readonly string[] = [...sagaDomains.map(streamName), ...sagaParticipants.map(commandStreamName)];

/**
 * Every durable consumer of the saga: who reads what. The services start their consumers on
 * these routes, and each makes sure all of them exist before it publishes (a stream is trimmed
 * to what the consumers that exist have yet to finish). Domains are parameters so that tests
 * can run the same wiring on streams of their own.
 */
export const sagaRoutes = {
  /** A participant's commands. */
  commands: (domain: string): ConsumerRoute => ({ stream: commandStreamName(domain), durable: commandConsumerName(domain), filterSubject: `${domain}.cmd.>` }),
  /** The fraud check's one command. */
  assessments: (fraud = "fraud"): ConsumerRoute => ({ ...sagaRoutes.commands(fraud), filterSubject: `${fraud}.cmd.assess` }),
  /** A participant's replies, taken by the order service. */
  replies: (domain: string): ConsumerRoute => ({ stream: streamName(domain), durable: `order-${domain}-events`, filterSubject: `${domain}.evt.>` }),
  /** The orders' outcomes, taken by the notification service. */
  notifications: (order = "order"): ConsumerRoute => ({ stream: streamName(order), durable: "notification-order-events", filterSubject: `${order}.evt.>` }),
  /** Confirmed orders, whose reserved stock the inventory service commits. */
  stockCommits: (order = "order"): ConsumerRoute => ({ stream: streamName(order), durable: "inventory-order-confirmed", filterSubject: `${order}.evt.confirmed` }),
};

/** The saga's durable consumers, all of them. */
export function sagaConsumerRoutes(): ConsumerRoute[] {
  return [
    sagaRoutes.assessments(),
    sagaRoutes.commands("inventory"),
    sagaRoutes.commands("payment"),
    ...sagaParticipants.map((domain) => sagaRoutes.replies(domain)),
    sagaRoutes.notifications(),
    sagaRoutes.stockCommits(),
  ];
}
