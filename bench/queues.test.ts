import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueSampler, sampleQueues } from "./queues.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const stream = `QUEUES_TEST_${process.pid}`;
const subject = `queues-test.${process.pid}`;

let nc: NatsConnection;
let jsm: JetStreamManager;
beforeAll(async () => {
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [subject, `${subject}.>`] });
  await jsm.consumers.add(stream, { durable_name: "slow", ack_policy: AckPolicy.Explicit });
  await jsm.consumers.add(stream, { durable_name: "idle", ack_policy: AckPolicy.Explicit, filter_subject: `${subject}.nothing` });
});
afterAll(async () => {
  await jsm?.streams.delete(stream).catch(() => undefined);
  await nc?.close();
});

describe("queue sampling", () => {
  it("counts each consumer's messages not yet acknowledged, and keeps the peak and the last sample", async () => {
    const js = jetstream(nc);
    for (let i = 0; i < 5; i++) await js.publish(subject, "x");
    expect((await sampleQueues(jsm)).get(`${stream}/slow`)).toBe(5);

    const sampler = await new QueueSampler(jsm, 50).start();
    const consumer = await js.consumers.get(stream, "slow");
    // Two delivered and acknowledged, one delivered and still in hand: 3 left to finish.
    const batch = await consumer.fetch({ max_messages: 3, expires: 1_000 });
    let taken = 0;
    for await (const m of batch) if (++taken <= 2) await m.ackAck();
    const queues = await sampler.stop();

    expect(queues?.find((q) => q.consumer === "slow")).toEqual({ stream, consumer: "slow", peak: 5, atEnd: 3 });
    expect(queues?.find((q) => q.consumer === "idle")).toEqual({ stream, consumer: "idle", peak: 0, atEnd: 0 });
    // Deepest first.
    expect(queues?.filter((q) => q.stream === stream).map((q) => q.consumer)).toEqual(["slow", "idle"]);
  });
});
