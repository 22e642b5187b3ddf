import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { errorMessage } from "../errors.js";
import type { ConsumerRef } from "./backlog.js";
import { isMissing } from "./missing.js";

/** A durable consumer's place: which stream it reads (e.g. `INVENTORY`), under which name, what of it. */
export interface ConsumerRoute extends ConsumerRef {
  /** One subject filter (nats-server 2.9), e.g. `inventory.cmd.>`. */
  filterSubject: string;
}

export interface DurableConsumerSettings extends ConsumerRoute {
  ackWaitMs: number;
  /** Server-side deliveries before JetStream stops delivering. */
  maxDeliver: number;
  maxAckPending: number;
}

function routeConfig(route: ConsumerRoute): Partial<ConsumerConfig> {
  return { durable_name: route.durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: route.filterSubject };
}

/**
 * Creates the durable pull consumer (explicit ack, from the stream's start), or updates what
 * can be updated of one that exists with another configuration.
 *
 * No server-side `backoff`: with it set (ack_wait multiples), nats-server 2.9.10 did not
 * redeliver a message nak'd a second time with a 100 ms delay within 5 s (its redelivery
 * check uses backoff[n]). Retry delays come from the consumer's nak delays; ack_wait covers crashes.
 */
export async function ensureDurableConsumer(js: JetStreamClient, settings: DurableConsumerSettings): Promise<void> {
  const { stream, durable, filterSubject } = settings;
  const jsm = await js.jetstreamManager();
  const limits = { max_deliver: settings.maxDeliver, ack_wait: nanos(settings.ackWaitMs), max_ack_pending: settings.maxAckPending };
  try {
    await jsm.consumers.add(stream, { ...routeConfig(settings), ...limits });
  } catch (err) {
    try {
      await jsm.consumers.update(stream, durable, { ...limits, filter_subject: filterSubject });
    } catch {
      throw new Error(`cannot create or update consumer ${durable} on ${stream}: ${errorMessage(err)}`);
    }
  }
}

/**
 * Creates those of `routes` that do not exist yet, with the server's default limits; leaves
 * the others as they are (each consumer's owner sets its limits when it starts). A stream is
 * trimmed to what its existing consumers have yet to finish: whichever service starts first
 * creates them all, so nothing published before a consumer's owner first starts is trimmed
 * before that consumer has it.
 */
export async function ensureConsumersExist(jsm: JetStreamManager, routes: readonly ConsumerRoute[]): Promise<void> {
  const exists = (route: ConsumerRoute): Promise<boolean> =>
    jsm.consumers.info(route.stream, route.durable).then(
      () => true,
      (err: unknown) => {
        if (isMissing(err, "consumer")) return false;
        throw err;
      },
    );
  for (const route of routes) {
    if (await exists(route)) continue;
    try {
      await jsm.consumers.add(route.stream, routeConfig(route));
    } catch (err) {
      // Its owner, or another service, created it meanwhile.
      if (!(await exists(route))) throw new Error(`cannot create consumer ${route.durable} on ${route.stream}: ${errorMessage(err)}`);
    }
  }
}
