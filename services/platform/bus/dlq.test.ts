import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { ChargePaymentSchema } from "../../../gen/orderflow/payment/v1/payment_pb.js";
import { startConsumer } from "./consumer.js";
import { runDlqCli } from "./dlq-cli.js";
import { listDeadLetters } from "./dlq.js";
import { publishMessages } from "./publish.js";
import { busTestEnv, waitFor, type BusTestEnv } from "./testkit.js";

process.env["LOG_LEVEL"] ??= "error";

let env: BusTestEnv;
beforeAll(async () => {
  env = await busTestEnv(["payment"], inject("infra"));
});
afterAll(async () => {
  await env?.cleanup();
});

describe("dlq command", () => {
  it("lists, shows and replays dead letters", async () => {
    const subj = `${env.domain("payment")}.cmd.charge`;
    let broken = true;
    const handled: string[] = [];
    const c = await startConsumer({
      js: env.js,
      stream: env.stream("payment"),
      durable: "charge",
      filterSubject: subj,
      maxDeliver: 1,
      dlq: env.dlq,
      handle: async (d) => {
        if (broken) throw new Error("wallet service\nunavailable");
        handled.push(d.id);
      },
    });
    try {
      await publishMessages(env.js, [
        { subject: subj, id: "charge-1", key: "o-1", message: create(ChargePaymentSchema, { orderId: "o-1", customerId: "c-1" }) },
        { subject: subj, id: "charge-2", key: "o-2", message: create(ChargePaymentSchema, { orderId: "o-2", customerId: "c-2" }) },
      ]);
      await waitFor(async () => (await listDeadLetters(env.jsm, { dlq: env.dlq })).length === 2, 5000, "2 dead letters");
      const lines: string[] = [];
      const deps = { js: env.js, jsm: env.jsm, dlq: env.dlq, out: (l: string) => lines.push(l) };

      expect(await runDlqCli(["list"], deps)).toBe(0);
      expect(lines[0]).toMatch(/^ID\s+TIME\s+SUBJECT\s+TYPE\s+DELIVERIES\s+CONSUMER\s+ERROR$/);
      expect(lines).toHaveLength(3);
      expect(lines[1]).toContain(subj);
      expect(lines[1]).toContain("orderflow.payment.v1.ChargePayment");
      expect(lines[1]).toContain("wallet service unavailable");
      const ids = lines.slice(1).map((l) => l.split(/\s+/)[0] ?? "");

      lines.length = 0;
      expect(await runDlqCli(["show", ids[0] ?? ""], deps)).toBe(0);
      const shown = JSON.parse(lines.join("\n")) as { messageId: string; deliveries: number; payload: { orderId: string } };
      expect(shown).toMatchObject({ messageId: "charge-1", deliveries: 1, payload: { orderId: "o-1" } });

      broken = false;
      lines.length = 0;
      expect(await runDlqCli(["replay", ids[0] ?? ""], deps)).toBe(0);
      await waitFor(() => handled.length === 1, 5000, "first replay handled");
      expect(handled).toEqual(["charge-1"]);

      lines.length = 0;
      expect(await runDlqCli(["replay", "--all"], deps)).toBe(0);
      expect(lines.at(-1)).toBe("1 replayed");
      await waitFor(() => handled.length === 2, 5000, "second replay handled");
      expect(handled).toEqual(["charge-1", "charge-2"]);

      lines.length = 0;
      expect(await runDlqCli(["list"], deps)).toBe(0);
      expect(lines).toEqual([`no dead letters in ${env.dlq.stream}`]);
      expect(await runDlqCli(["replay", "999999"], deps)).toBe(1);
      expect(await runDlqCli(["bogus"], deps)).toBe(2);
    } finally {
      await c.stop();
    }
  });
});
