import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SharedSubscriptions } from "./shared-subscriptions.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";

let nc: NatsConnection;
let publisher: NatsConnection;
beforeAll(async () => {
  [nc, publisher] = await Promise.all([connect({ servers: NATS_URL }), connect({ servers: NATS_URL })]);
});
afterAll(async () => {
  await Promise.all([nc?.close(), publisher?.close()]);
});

const prefix = `shared-subscriptions-test.${process.pid}.${Date.now()}`;

/** Publishes `text` on each key's subject and returns what the subscriber heard once both connections have flushed. */
async function heardAfterPublishing(heard: string[], keys: string[], text: string): Promise<string[]> {
  for (const key of keys) publisher.publish(`${prefix}.${key}`, text);
  await publisher.flush();
  await nc.flush();
  return heard.splice(0);
}

describe("SharedSubscriptions", () => {
  it("subscribes a key once for all its holders and unsubscribes when the last lets go", async () => {
    const heard: string[] = [];
    const subscriptions = new SharedSubscriptions(nc, (key) => `${prefix}.${key}`, (key, data) => void heard.push(`${key}:${new TextDecoder().decode(data)}`));
    await Promise.all([subscriptions.acquire("a"), subscriptions.acquire("a"), subscriptions.acquire("b")]);
    expect([...subscriptions.keys()].sort()).toEqual(["a", "b"]);
    expect((await heardAfterPublishing(heard, ["a", "b", "c"], "1")).sort()).toEqual(["a:1", "b:1"]);

    subscriptions.release("a");
    expect(await heardAfterPublishing(heard, ["a"], "2")).toEqual(["a:2"]);

    subscriptions.release("a");
    subscriptions.release("b");
    expect([...subscriptions.keys()]).toEqual([]);
    expect(await heardAfterPublishing(heard, ["a", "b"], "3")).toEqual([]);
  });

  it("releaseAll stops every key, and releases after it change nothing", async () => {
    const heard: string[] = [];
    const subscriptions = new SharedSubscriptions(nc, (key) => `${prefix}.${key}`, (key) => void heard.push(key));
    await subscriptions.acquire("x");
    subscriptions.releaseAll();
    subscriptions.release("x");
    expect(await heardAfterPublishing(heard, ["x"], "1")).toEqual([]);
    await subscriptions.acquire("x");
    expect(await heardAfterPublishing(heard, ["x"], "2")).toEqual(["x"]);
    subscriptions.releaseAll();
  });
});
