/**
 * Upgrading from the stream layout in which a participant's commands and replies shared one
 * stream (INVENTORY capturing `inventory.>`, its `inventory-commands` consumer filtered to
 * `inventory.cmd.>`, and so FRAUD and PAYMENT). The system is stopped with a reserve command
 * unfinished in that consumer, the streams are put back as the earlier version had them, and the
 * services started again: they split the streams, delete the consumers left reading what their
 * streams no longer capture, and the step deadline sends the stranded command again. Nothing is
 * lost: the order is confirmed once, and the audit holds.
 */
import { AckPolicy } from "@nats-io/jetstream";
import { beforeAll, describe, expect, test } from "vitest";
import { commandConsumerName, commandStreamName, Header, streamName } from "../../services/platform/bus/index.js";
import { sagaParticipants, sagaRoutes, sagaStreams } from "../../services/platform/saga-routes.js";
import { auditUntilClean, formatAudit, snapshotStock, type StockBaseline } from "../support/saga-audit.js";
import { addProduct, eventually, fundInto, type SagaSystem, sagaServices, startSagaSystem, stopAndReportOnFailure, waitTerminal } from "../support/saga-system.js";

let sys: SagaSystem;
let baseline: StockBaseline;
const topUps = new Map<string, bigint>();
const fund = fundInto(() => sys, topUps);

beforeAll(async () => {
  sys = await startSagaSystem({ name: "upgrade", serviceEnv: { order: { SAGA_STEP_TIMEOUT_MS: "1000" } } });
  await addProduct(sys, "E2E-UPG", 1_000n, 10n);
  baseline = await snapshotStock(sys.db);
}, 120_000);

stopAndReportOnFailure(() => sys);

/** The layout before the split: one stream per domain for all its subjects, the participant's consumer on it. */
async function restoreSharedLayout(): Promise<void> {
  for (const domain of sagaParticipants) {
    await sys.jsm.streams.delete(commandStreamName(domain));
    await sys.jsm.streams.update(streamName(domain), { subjects: [`${domain}.>`] });
    const { filterSubject } = sagaRoutes.commands(domain);
    await sys.jsm.consumers.add(streamName(domain), { durable_name: commandConsumerName(domain), ack_policy: AckPolicy.Explicit, filter_subject: filterSubject });
  }
}

describe("upgrade from streams shared by a participant's commands and replies", () => {
  test("a command unfinished in the old consumer is sent again once the services have split the streams; the order is confirmed once", async () => {
    await fund("uma", 10_000n);
    // The reserve waits on the product's row inside inventory's transaction; inventory is
    // killed there, so the command is left unacknowledged.
    const lock = await sys.db.connect();
    let orderId = "";
    try {
      await lock.query("BEGIN");
      await lock.query("SELECT 1 FROM inventory.products WHERE sku = 'E2E-UPG' FOR UPDATE");
      const { order } = await sys.order.createOrder({ customerId: "uma", items: [{ sku: "E2E-UPG", quantity: 2n }] });
      if (!order) throw new Error("no order");
      orderId = order.orderId;
      await eventually(
        async () => (await sys.db.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM products p%'")).rowCount === 1,
        10_000,
        "the reserve to wait for the product lock",
      );
      await sys.system.kill("inventory");
      for (const name of sagaServices) await sys.system.stopService(name);
    } finally {
      await lock.query("ROLLBACK");
      lock.release();
    }
    const commands = commandStreamName("inventory");
    const { state } = await sys.jsm.streams.info(commands);
    const stranded = await sys.jsm.streams.getMessage(commands, { seq: state.last_seq });
    expect([stranded?.subject, stranded?.header.get(Header.key)]).toEqual(["inventory.cmd.reserve", orderId]);
    if (!stranded) throw new Error("no reserve");

    // As the earlier version left it: the reserve in INVENTORY, unfinished by `inventory-commands`.
    await restoreSharedLayout();
    await sys.js.publish(stranded.subject, stranded.data, { headers: stranded.header });
    const oldConsumer = await sys.jsm.consumers.info(streamName("inventory"), commandConsumerName("inventory"));
    expect(oldConsumer.num_pending).toBe(1);

    const logMark = sys.logs.size;
    for (const name of sagaServices) await sys.system.restart(name);

    expect(await waitTerminal(sys, orderId)).toBe("CONFIRMED");
    const retired = sys.logs.since(logMark).filter((line) => line.includes("deleted a consumer whose messages moved to another stream"));
    for (const domain of sagaParticipants) expect(retired.some((line) => line.includes(`"consumer":"${commandConsumerName(domain)}"`)), domain).toBe(true);
    for (const domain of sagaParticipants) {
      expect((await sys.jsm.streams.info(streamName(domain))).config.subjects).toEqual([`${domain}.evt.>`]);
      expect((await sys.jsm.streams.info(commandStreamName(domain))).config.subjects).toEqual([`${domain}.cmd.>`]);
      const names: string[] = [];
      for await (const consumer of sys.jsm.consumers.list(streamName(domain))) names.push(consumer.name);
      expect(names).toEqual([sagaRoutes.replies(domain).durable]);
    }
    const { rows } = await sys.db.query<{ step_attempts: number }>("SELECT step_attempts FROM orders.orders WHERE order_id = $1", [orderId]);
    expect(rows[0]?.step_attempts).toBeGreaterThan(1);

    // The upgraded system takes new orders, and the streams are trimmed to nothing.
    const { order: next } = await sys.order.createOrder({ customerId: "uma", items: [{ sku: "E2E-UPG", quantity: 1n }] });
    if (!next) throw new Error("no order");
    expect(await waitTerminal(sys, next.orderId)).toBe("CONFIRMED");
    const report = await auditUntilClean(sys.db, { baseline, topUps, orderIds: [orderId, next.orderId] }, 20_000);
    console.log(formatAudit("upgrade: an order stranded in the old layout, and one after", report));
    expect(report.violations).toEqual([]);
    await eventually(async () => (await Promise.all(sagaStreams.map(async (stream) => (await sys.jsm.streams.info(stream)).state.messages))).every((n) => n === 0), 15_000, "the saga streams trimmed");
  }, 120_000);
});
