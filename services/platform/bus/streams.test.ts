import { randomBytes } from "node:crypto";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import { afterAll, describe, expect, it, inject } from "vitest";
import { errorMessage } from "../errors.js";
import { deleteStreams, ensureStreams } from "./streams.js";
import { NATS_URL } from "./testkit.js";

describe("ensureStreams", () => {
  const id = `t${randomBytes(4).toString("hex")}`;
  const domains = [`${id}_order`, `${id}_inventory`];
  const dlq = { stream: `${id.toUpperCase()}_DLQ`, subjectPrefix: `${id}_dlq` };
  const names = [`${id.toUpperCase()}_ORDER`, `${id.toUpperCase()}_INVENTORY`, dlq.stream];
  const payment = `${id}_payment`;
  const paymentStreams = [`${id.toUpperCase()}_PAYMENT`, `${id.toUpperCase()}_PAYMENT_COMMANDS`];
  let cleanup: () => Promise<void> = async () => undefined;
  afterAll(() => cleanup());

  it("creates one file stream per domain plus the DLQ, idempotently, and updates settings", async () => {
    const nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    const jsm = await jetstreamManager(nc);
    cleanup = async () => {
      await deleteStreams(jsm, [...names, ...paymentStreams]);
      await nc.close();
    };
    await ensureStreams(jsm, domains, { dlq });
    await Promise.all([ensureStreams(jsm, domains, { dlq }), ensureStreams(jsm, domains, { dlq })]);
    const order = await jsm.streams.info(names[0] ?? "");
    expect(order.config.subjects).toEqual([`${id}_order.>`]);
    expect(order.config.storage).toBe("file");
    expect(order.config.duplicate_window).toBe(nanos(120_000));
    const dead = await jsm.streams.info(dlq.stream);
    expect(dead.config.subjects).toEqual([`${id}_dlq.>`]);
    await ensureStreams(jsm, domains, { dlq, duplicateWindowMs: 60_000 });
    expect((await jsm.streams.info(names[1] ?? "")).config.duplicate_window).toBe(nanos(60_000));
  });

  it("bounds every stream, the dead letters' too, by bytes when asked (none by default): a domain's refuses what comes, the dead letters drop their oldest", async () => {
    const nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    const jsm = await jetstreamManager(nc);
    try {
      await ensureStreams(jsm, domains, { dlq });
      for (const name of names) expect((await jsm.streams.info(name)).config.max_bytes).toBe(-1);
      await ensureStreams(jsm, domains, { dlq, maxBytes: 1_048_576 });
      const bounds = [];
      for (const name of names) {
        const { config } = await jsm.streams.info(name);
        bounds.push([name, config.retention, config.max_bytes, config.discard]);
      }
      // The dead letters drop their oldest: a refused one would be lost unrecorded.
      expect(bounds).toEqual([
        [names[0], "limits", 1_048_576, "new"],
        [names[1], "limits", 1_048_576, "new"],
        [dlq.stream, "limits", 1_048_576, "old"],
      ]);
    } finally {
      await nc.close();
    }
  });

  it("a domain's stream refuses a message at the byte bound and keeps every message it holds", async () => {
    const nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const [, inventory = ""] = names;
    try {
      await ensureStreams(jsm, domains, { dlq, maxBytes: 4_096 });
      const payload = new Uint8Array(1_000);
      let accepted = 0;
      let refusal = "";
      for (let i = 0; i < 8 && refusal === ""; i++) {
        await js.publish(`${id}_inventory.cmd.reserve`, payload, { msgID: `m${i}` }).then(
          () => accepted++,
          (err: unknown) => (refusal = errorMessage(err)),
        );
      }
      expect(refusal).toMatch(/maximum bytes/i);
      const { state } = await jsm.streams.info(inventory);
      expect([state.messages, state.first_seq]).toEqual([accepted, 1]);
    } finally {
      await ensureStreams(jsm, domains, { dlq });
      await nc.close();
    }
  });

  it("gives a domain's commands a stream of their own when asked, moving them out of a stream that held both and deleting the consumer left reading what the stream no longer captures", async () => {
    const nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const [events = "", commands = ""] = paymentStreams;
    try {
      // The layout before: commands and replies in one stream, a consumer for each.
      expect((await ensureStreams(jsm, [payment], { dlq })).retired).toEqual([]);
      const consumer = (durable: string, filter: string) => jsm.consumers.add(events, { durable_name: durable, ack_policy: AckPolicy.Explicit, filter_subject: `${payment}.${filter}.>` });
      await consumer("payment-commands", "cmd");
      await consumer("order-payment-events", "evt");
      await js.publish(`${payment}.cmd.charge`, new Uint8Array(8));
      await js.publish(`${payment}.evt.charged`, new Uint8Array(8));

      const { retired } = await ensureStreams(jsm, [payment], { dlq, commandStreams: [payment] });
      expect(retired).toEqual([{ stream: events, consumer: "payment-commands", filterSubject: `${payment}.cmd.>` }]);
      expect((await jsm.streams.info(events)).config.subjects).toEqual([`${payment}.evt.>`]);
      expect((await jsm.streams.info(commands)).config).toMatchObject({ subjects: [`${payment}.cmd.>`], discard: "new" });
      const left = [];
      for await (const c of jsm.consumers.list(events)) left.push([c.name, c.num_pending]);
      expect(left).toEqual([["order-payment-events", 1]]);
      expect((await js.publish(`${payment}.cmd.refund`, new Uint8Array(8))).stream).toBe(commands);
      expect((await js.publish(`${payment}.evt.refunded`, new Uint8Array(8))).stream).toBe(events);
      // Again, and from several replicas at once: nothing more to move.
      const again = await Promise.all([ensureStreams(jsm, [payment], { dlq, commandStreams: [payment] }), ensureStreams(jsm, [payment], { dlq, commandStreams: [payment] })]);
      expect(again.map((r) => r.retired)).toEqual([[], []]);
    } finally {
      await nc.close();
    }
  });
});
