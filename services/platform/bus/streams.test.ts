import { randomBytes } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import { afterAll, describe, expect, it, inject } from "vitest";
import { deleteStreams, ensureStreams } from "./streams.js";
import { NATS_URL } from "./testkit.js";

describe("ensureStreams", () => {
  const id = `t${randomBytes(4).toString("hex")}`;
  const domains = [`${id}_order`, `${id}_inventory`];
  const dlq = { stream: `${id.toUpperCase()}_DLQ`, subjectPrefix: `${id}_dlq` };
  const names = [`${id.toUpperCase()}_ORDER`, `${id.toUpperCase()}_INVENTORY`, dlq.stream];
  let cleanup: () => Promise<void> = async () => undefined;
  afterAll(() => cleanup());

  it("creates one file stream per domain plus the DLQ, idempotently, and updates settings", async () => {
    const nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    const jsm = await jetstreamManager(nc);
    cleanup = async () => {
      await deleteStreams(jsm, names);
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

  it("bounds every stream, the dead letters' too, by bytes when asked (by age alone otherwise)", async () => {
    const nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    const jsm = await jetstreamManager(nc);
    try {
      await ensureStreams(jsm, domains, { dlq });
      for (const name of names) expect((await jsm.streams.info(name)).config.max_bytes).toBe(-1);
      await ensureStreams(jsm, domains, { dlq, maxBytes: 1_048_576 });
      for (const name of names) {
        const { config } = await jsm.streams.info(name);
        expect([config.max_bytes, config.discard]).toEqual([1_048_576, "old"]);
      }
    } finally {
      await nc.close();
    }
  });
});
