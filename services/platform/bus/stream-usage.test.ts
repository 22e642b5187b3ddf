import { randomBytes } from "node:crypto";
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { register } from "prom-client";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { exportStreamUsage, readStreamUsage } from "./stream-usage.js";
import { NATS_URL } from "./testkit.js";

describe("stream usage", () => {
  const stream = `USAGE_${randomBytes(4).toString("hex").toUpperCase()}`;
  const subject = `${stream.toLowerCase()}.x`;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [subject], max_bytes: 1_048_576 });
    await jsm.consumers.add(stream, { durable_name: "slow", ack_policy: AckPolicy.Explicit });
    const js = jetstream(nc);
    for (let i = 0; i < 3; i++) await js.publish(subject, "x".repeat(100));
  });
  afterAll(async () => {
    await jsm?.streams.delete(stream).catch(() => undefined);
    await nc?.close();
  });

  it("reads each stream's bytes and bound and its consumers' unfinished messages, leaving out a stream that is gone", async () => {
    const [usage, ...others] = await readStreamUsage(jsm, [stream, `${stream}_GONE`]);
    expect(others).toEqual([]);
    expect(usage?.stream).toBe(stream);
    expect(usage?.maxBytes).toBe(1_048_576);
    expect(usage?.bytes).toBeGreaterThanOrEqual(300);
    expect(usage?.consumers).toEqual([{ consumer: "slow", pending: 3 }]);
  });

  it("reports them on /metrics when scraped, until the bus that exported them stops", async () => {
    const metric = async (name: string): Promise<string> => (await register.getSingleMetricAsString(name)) ?? "";
    const stop = exportStreamUsage(jsm, [stream]);
    expect(await metric("orderflow_bus_consumer_pending")).toContain(`orderflow_bus_consumer_pending{stream="${stream}",consumer="slow"} 3`);
    expect(await metric("orderflow_bus_stream_bytes_limit")).toContain(`orderflow_bus_stream_bytes_limit{stream="${stream}"} 1048576`);
    expect(await metric("orderflow_bus_stream_bytes")).toMatch(new RegExp(`orderflow_bus_stream_bytes\\{stream="${stream}"\\} \\d{3,}`));
    stop();
    expect(await metric("orderflow_bus_consumer_pending")).not.toContain(stream);
  });
});
