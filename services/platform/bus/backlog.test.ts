import { AckPolicy } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { consumerBacklog } from "./backlog.js";
import { busTestEnv, type BusTestEnv } from "./testkit.js";

let env: BusTestEnv;
beforeAll(async () => {
  env = await busTestEnv(["fraud"], inject("infra"));
});
afterAll(() => env?.cleanup());

describe("consumerBacklog", () => {
  it("counts what a consumer has yet to finish — undelivered and unacknowledged — and 0 for a consumer that does not exist", async () => {
    const stream = env.stream("fraud");
    const subject = `${env.domain("fraud")}.cmd.assess`;
    await env.jsm.consumers.add(stream, { durable_name: "probe", ack_policy: AckPolicy.Explicit, filter_subject: subject });
    for (let i = 0; i < 3; i++) await env.js.publish(subject, new Uint8Array([i]));
    const ref = { stream, durable: "probe" };
    const missing = { stream, durable: "nobody" };
    expect(await consumerBacklog(env.jsm, [ref, missing])).toBe(3);

    const consumer = await env.js.consumers.get(stream, "probe");
    const first = await consumer.next({ expires: 2_000 });
    expect(await consumerBacklog(env.jsm, [ref])).toBe(3); // delivered, not yet acked
    await first?.ackAck();
    expect(await consumerBacklog(env.jsm, [ref])).toBe(2);
    for (let i = 0; i < 2; i++) await (await consumer.next({ expires: 2_000 }))?.ackAck();
    expect(await consumerBacklog(env.jsm, [ref, missing])).toBe(0);
  });
});
