import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { BUNDLE_TYPE, bundleForWire, publishWire, receivedEntries, sizeOf, type WireEntry, type WireMessage } from "./bundle.js";
import { Header } from "./names.js";
import { busTestEnv, type BusTestEnv, readStream, waitFor } from "./testkit.js";

function entry(subject: string, id: string, key: string | null): WireEntry {
  return { subject, type: "orderflow.test.v1.Thing", payload: new TextEncoder().encode(id), id, key, headers: { traceparent: `00-${id}` } };
}

describe("bundleForWire", () => {
  it("sends a lone message as itself, under its own id", () => {
    const [wire, ...rest] = bundleForWire([entry("a.cmd.x", "m1", "k1")]);
    expect(rest).toHaveLength(0);
    expect(wire?.msgID).toBe("m1");
    expect(wire?.headers.get(Header.type)).toBe("orderflow.test.v1.Thing");
    expect(wire?.headers.get(Header.key)).toBe("k1");
    expect(sizeOf(wire?.headers)).toBe(1);
  });

  it("puts at most `max` entries in one message, and round-trips each entry's id, key, type, payload and headers", () => {
    const entries = ["m1", "m2", "m3", "m4", "m5"].map((id, i) => entry("a.cmd.x", id, i === 4 ? null : `k${i}`));
    const wire = bundleForWire(entries, 2);
    expect(wire.map((w) => w.size)).toEqual([2, 2, 1]);
    expect(wire.map((w) => w.positions)).toEqual([[0, 1], [2, 3], [4]]);
    expect(wire[0]?.headers.get(Header.type)).toBe(BUNDLE_TYPE);
    expect(sizeOf(wire[0]?.headers)).toBe(2);
    const received = wire.flatMap((w) => receivedEntries(w.headers, w.payload));
    expect(received.map((r) => [r.id, r.key, r.type, new TextDecoder().decode(r.payload), r.headers?.get("traceparent")])).toEqual(
      entries.map((e) => [e.id, e.key ?? "", e.type, e.id, `00-${e.id}`]),
    );
  });

  it("says where each message's entries were in the list it was given", () => {
    const wire = bundleForWire([entry("a.cmd.x", "m1", "k1"), entry("b.cmd.y", "m2", "k2"), entry("a.cmd.x", "m3", "k3")]);
    expect(wire.map((w) => [w.subject, w.positions])).toEqual([
      ["a.cmd.x", [0, 2]],
      ["b.cmd.y", [1]],
    ]);
  });

  it("gives the same entries the same bundle id, and other entries another", () => {
    const a = bundleForWire([entry("a.cmd.x", "m1", "k1"), entry("a.cmd.x", "m2", "k2")]);
    const b = bundleForWire([entry("a.cmd.x", "m1", "k1"), entry("a.cmd.x", "m2", "k2")]);
    const c = bundleForWire([entry("a.cmd.x", "m1", "k1"), entry("a.cmd.x", "m3", "k2")]);
    expect(a[0]?.msgID).toBe(b[0]?.msgID);
    expect(a[0]?.msgID).not.toBe(c[0]?.msgID);
  });
});

describe("publishWire (real NATS JetStream)", () => {
  let env: BusTestEnv;
  beforeAll(async () => {
    env = await busTestEnv(["inventory"], inject("infra"));
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it("says which messages JetStream acknowledged, each as its ack comes, and which failed", async () => {
    const stored = `${env.domain("inventory")}.evt.stored`;
    const nowhere = `${env.domain("nowhere")}.evt.lost`;
    const wire = bundleForWire([entry(stored, "pw-1", "k1"), entry(nowhere, "pw-2", "k2"), entry(stored, "pw-3", "k3")]);
    const acknowledged: WireMessage[] = [];
    const failed: WireMessage[] = [];
    await expect(publishWire(env.publisher, wire, (w, { ack }) => (ack ? acknowledged : failed).push(w))).rejects.toThrow(/no JetStream stream captures/);
    await waitFor(() => acknowledged.length === 1, 5000, "the stored bundle acknowledged");
    expect(acknowledged.map((w) => [w.subject, w.positions])).toEqual([[stored, [0, 2]]]);
    expect(failed.map((w) => [w.subject, w.positions])).toEqual([[nowhere, [1]]]);
    const inStream = (await readStream(env.jsm, env.stream("inventory"))).filter((m) => m.subject === stored);
    expect(inStream.flatMap((m) => receivedEntries(m.header, m.data).map((e) => e.id))).toEqual(["pw-1", "pw-3"]);
  });
});
