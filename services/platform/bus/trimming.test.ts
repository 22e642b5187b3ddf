import { randomBytes } from "node:crypto";
import { AckPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { ensureConsumersExist } from "./durable.js";
import { startRecording } from "./recording.js";
import { deleteStreams, ensureStreams } from "./streams.js";
import { NATS_URL } from "./testkit.js";
import { createLogger } from "../logger.js";
import { type ConsumerProgress, firstNeeded, startStreamTrimming, trimStream } from "./trimming.js";

const consumer = (pending: number, inHand: number, ackFloor: number): ConsumerProgress => ({ num_pending: pending, num_ack_pending: inHand, ack_floor: { stream_seq: ackFloor } });

describe("firstNeeded", () => {
  it("is past the stream's last message when every consumer has finished, else just past the lowest ack floor", () => {
    expect(firstNeeded(100, [consumer(0, 0, 40), consumer(0, 0, 100)])).toBe(101);
    expect(firstNeeded(100, [consumer(0, 0, 40), consumer(3, 0, 70)])).toBe(71);
    expect(firstNeeded(100, [consumer(0, 2, 55), consumer(3, 0, 70)])).toBe(56);
  });

  it("keeps everything without consumers: one yet to be created takes the stream from its start", () => {
    expect(firstNeeded(100, [])).toBe(0);
  });
});

describe("trimStream", () => {
  const id = `t${randomBytes(4).toString("hex")}`;
  const stream = `${id.toUpperCase()}_ORDER`;
  const dlq = { stream: `${id.toUpperCase()}_DLQ`, subjectPrefix: `${id}_dlq` };
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let js: JetStreamClient;
  beforeAll(async () => {
    nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    jsm = await jetstreamManager(nc);
    js = jetstream(nc);
    await ensureStreams(jsm, [`${id}_order`], { dlq });
  });
  afterAll(async () => {
    await deleteStreams(jsm, [stream, dlq.stream]);
    await nc.close();
  });
  const publish = async (subjects: string[]) => {
    for (const s of subjects) await js.publish(`${id}_order.evt.${s}`, new Uint8Array([1]));
  };
  const take = async (durable: string, n: number) => {
    const c = await js.consumers.get(stream, durable);
    for (let i = 0; i < n; i++) await (await c.next({ expires: 2_000 }))?.ackAck();
  };
  const held = async () => {
    const { state } = await jsm.streams.info(stream);
    return [state.first_seq, state.messages];
  };

  it("lets go of what every consumer has finished, and nothing a consumer has yet to take", async () => {
    await publish(["rejected"]);
    expect(await trimStream(jsm, stream)).toBe(0);
    await ensureConsumersExist(jsm, [
      { stream, durable: "notes", filterSubject: `${id}_order.evt.>` },
      { stream, durable: "commits", filterSubject: `${id}_order.evt.confirmed` },
    ]);
    // 1 rejected (before the consumers: they take the stream from its start), 2 confirmed, 3 rejected, 4 confirmed.
    await publish(["confirmed", "rejected", "confirmed"]);
    expect(await trimStream(jsm, stream)).toBe(0);
    await take("notes", 3);
    // commits has 2 and 4 to take; its ack floor is 0.
    expect(await trimStream(jsm, stream)).toBe(0);
    await take("commits", 1);
    // commits finished 2; notes finished 1-3.
    expect(await trimStream(jsm, stream)).toBe(2);
    expect(await held()).toEqual([3, 2]);
    await take("notes", 1);
    await take("commits", 1);
    expect(await trimStream(jsm, stream)).toBe(2);
    expect(await held()).toEqual([5, 0]);
    // A message only one of them takes, which that one has finished.
    await publish(["rejected"]);
    await take("notes", 1);
    expect(await trimStream(jsm, stream)).toBe(1);
  });

  it("keeps what a recording holds, and what a consumer took and has not acknowledged", async () => {
    await startRecording(jsm, [stream], "recording");
    await publish(["rejected", "rejected"]);
    await take("notes", 2);
    expect(await trimStream(jsm, stream)).toBe(0);
    await jsm.consumers.delete(stream, "recording");
    const notes = await js.consumers.get(stream, "notes");
    await publish(["rejected"]);
    const inHand = await notes.next({ expires: 2_000 });
    expect(inHand).not.toBeNull();
    expect(await trimStream(jsm, stream)).toBe(2);
    expect((await held())[1]).toBe(1);
    await inHand?.ackAck();
    expect(await trimStream(jsm, stream)).toBe(1);
  });

  it("leaves a consumer created with an explicit start alone with what it will take", async () => {
    await jsm.consumers.add(stream, { durable_name: "late", ack_policy: AckPolicy.Explicit, filter_subject: `${id}_order.evt.>` });
    await publish(["confirmed"]);
    await take("notes", 1);
    await take("commits", 1);
    expect(await trimStream(jsm, stream)).toBe(0);
    await take("late", 1);
    expect(await trimStream(jsm, stream)).toBe(1);
  });

  it("trims on its own while active: not on a replica whose relay does not lead", async () => {
    await publish(["rejected"]);
    for (const durable of ["notes", "late"]) await take(durable, 1);
    let leads = false;
    const stop = startStreamTrimming({ jsm, streams: [stream], intervalMs: 50, active: () => leads, logger: createLogger("trimming-test", "error") });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect((await held())[1]).toBe(1);
      leads = true;
      const deadline = Date.now() + 3_000;
      while ((await held())[1] !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect((await held())[1]).toBe(0);
    } finally {
      stop();
    }
  });
});
