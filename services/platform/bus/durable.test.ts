import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { type ConsumerRoute, ensureConsumersExist, ensureDurableConsumer } from "./durable.js";
import { deleteStreams, ensureStreams } from "./streams.js";
import { NATS_URL } from "./testkit.js";

describe("the saga's consumers", () => {
  const id = `t${randomBytes(4).toString("hex")}`;
  const order = `${id.toUpperCase()}_ORDER`;
  const dlq = { stream: `${id.toUpperCase()}_DLQ`, subjectPrefix: `${id}_dlq` };
  const routes: ConsumerRoute[] = [
    { stream: order, durable: "notes", filterSubject: `${id}_order.evt.>` },
    { stream: order, durable: "commits", filterSubject: `${id}_order.evt.confirmed` },
  ];
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    await ensureStreams(await jetstreamManager(nc), [`${id}_order`], { dlq });
  });
  afterAll(async () => {
    await deleteStreams(await jetstreamManager(nc), [order, dlq.stream]);
    await nc.close();
  });

  it("all exist once any service has started: what is published before their owners start is kept for them", async () => {
    const jsm = await jetstreamManager(nc);
    await Promise.all([ensureConsumersExist(jsm, routes), ensureConsumersExist(jsm, routes), ensureConsumersExist(jsm, routes)]);
    for (const route of routes) {
      const { config } = await jsm.consumers.info(order, route.durable);
      expect([config.filter_subject, config.ack_policy, config.deliver_policy]).toEqual([route.filterSubject, "explicit", "all"]);
    }
    await jetstream(nc).publish(`${id}_order.evt.confirmed`, new Uint8Array([1]));
    for (const route of routes) expect((await jsm.consumers.info(order, route.durable)).num_pending).toBe(1);
  });

  it("keep the limits their owners set, which a later start of another service leaves as they are", async () => {
    const jsm = await jetstreamManager(nc);
    const [notes] = routes;
    if (!notes) throw new Error("no route");
    await ensureConsumersExist(jsm, routes);
    await ensureDurableConsumer(jetstream(nc), { ...notes, ackWaitMs: 3_000, maxDeliver: 8, maxAckPending: 50 });
    await ensureConsumersExist(jsm, routes);
    const { config, num_pending } = await jsm.consumers.info(order, notes.durable);
    expect([config.ack_wait, config.max_deliver, config.max_ack_pending, config.filter_subject]).toEqual([nanos(3_000), 8, 50, notes.filterSubject]);
    expect(num_pending).toBe(1);
  });
});
