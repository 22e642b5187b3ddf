import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
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

  it("bounds every stream, the dead letters' too, by bytes when asked (none by default): the refusing domains' refuse what comes, the others drop their oldest", async () => {
    const nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    const jsm = await jetstreamManager(nc);
    try {
      await ensureStreams(jsm, domains, { dlq });
      for (const name of names) expect((await jsm.streams.info(name)).config.max_bytes).toBe(-1);
      await ensureStreams(jsm, domains, { dlq, maxBytes: 1_048_576, refusingDomains: [`${id}_order`] });
      const bounds = [];
      for (const name of names) {
        const { config } = await jsm.streams.info(name);
        bounds.push([name, config.retention, config.max_bytes, config.discard]);
      }
      // The dead letters drop their oldest: a refused one would be lost unrecorded.
      expect(bounds).toEqual([
        [names[0], "limits", 1_048_576, "new"],
        [names[1], "limits", 1_048_576, "old"],
        [dlq.stream, "limits", 1_048_576, "old"],
      ]);
    } finally {
      await nc.close();
    }
  });

  it("a refusing domain's stream refuses a message at the byte bound and keeps every message it holds", async () => {
    const nc = await connect({ servers: inject("infra")?.natsUrl ?? NATS_URL, timeout: 3000 });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const [, inventory = ""] = names;
    try {
      await ensureStreams(jsm, domains, { dlq, maxBytes: 4_096, refusingDomains: [`${id}_inventory`] });
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
});
