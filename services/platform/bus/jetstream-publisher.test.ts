import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { JetStreamPublisher } from "./jetstream-publisher.js";
import { Header } from "./names.js";
import { busTestEnv, readStream, type BusTestEnv } from "./testkit.js";

let env: BusTestEnv;
beforeAll(async () => {
  env = await busTestEnv(["inventory"], inject("infra"));
});
afterAll(async () => {
  await env?.cleanup();
});

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("JetStreamPublisher (real NATS JetStream)", () => {
  it("stores each message once, in order, with its msgID, and says which were duplicates", async () => {
    const subject = `${env.domain("inventory")}.cmd.order-test`;
    const sends = Array.from({ length: 200 }, (_, i) => env.publisher.publish(subject, bytes(`m${i}`), { msgID: `order-test-${i}`, headers: headers() }));
    const acks = await Promise.all(sends);
    expect(acks.every((a) => a.stream === env.stream("inventory") && !a.duplicate)).toBe(true);
    const seqs = acks.map((a) => a.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(200);

    const again = await env.publisher.publish(subject, bytes("m7"), { msgID: "order-test-7", headers: headers() });
    expect(again).toMatchObject({ duplicate: true, seq: acks[7]?.seq });

    const stored = (await readStream(env.jsm, env.stream("inventory"))).filter((m) => m.subject === subject);
    expect(stored.map((m) => new TextDecoder().decode(m.data))).toEqual(Array.from({ length: 200 }, (_, i) => `m${i}`));
    expect(stored[3]?.header.get(Header.msgId)).toBe("order-test-3");
  });

  it("fails a publish no stream captures, and one nobody acknowledges in time", async () => {
    await expect(env.publisher.publish(`${env.domain("nowhere")}.cmd.x`, bytes("x"), { msgID: "nowhere-1", headers: headers() })).rejects.toThrow(/no JetStream stream captures/);

    // A core subscriber that never answers: the publish waits for an ack that does not come.
    const silent = env.nc.subscribe(`${env.domain("silent")}.x`);
    const impatient = new JetStreamPublisher(env.nc, 200);
    try {
      await expect(impatient.publish(`${env.domain("silent")}.x`, bytes("x"), { msgID: "silent-1", headers: headers() })).rejects.toThrow(/timed out after 200 ms/);
    } finally {
      impatient.close();
      silent.unsubscribe();
    }
  });

  it("passes on JetStream's refusals", async () => {
    const subject = `${env.domain("inventory")}.cmd.expect-test`;
    const h = headers();
    h.set("Nats-Expected-Stream", "NOT_THIS_STREAM");
    await expect(env.publisher.publish(subject, bytes("x"), { msgID: "expect-1", headers: h })).rejects.toThrow(/refused: .*stream/i);
  });

  it("fails what is pending when closed, and every publish after", async () => {
    const silent = env.nc.subscribe(`${env.domain("closing")}.x`);
    const publisher = new JetStreamPublisher(env.nc);
    const pending = publisher.publish(`${env.domain("closing")}.x`, bytes("x"), { msgID: "closing-1", headers: headers() });
    publisher.close();
    await expect(pending).rejects.toThrow(/closed before/);
    await expect(publisher.publish(`${env.domain("inventory")}.cmd.after`, bytes("x"), { msgID: "after-1", headers: headers() })).rejects.toThrow(/closed/);
    silent.unsubscribe();
  });
});
