import { randomBytes, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Client, ConnectError, Code } from "@connectrpc/connect";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotificationKind, NotificationService } from "../../gen/orderflow/notification/v1/notification_pb.js";
import { type OrderConcluded, OrderConcludedSchema } from "../../gen/orderflow/order/v1/events_pb.js";
import { OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { type BusConsumer, busHeaders, encodeMessage } from "../platform/bus/index.js";
import { busTestEnv, counted, DATABASE_URL, NATS_URL, natsLink, type NatsLink, waitFor, type BusTestEnv } from "../platform/bus/testkit.js";
import { Database } from "../platform/db.js";
import { createLogger } from "../platform/logger.js";
import { migrate } from "../platform/migrate.js";
import { deleteNotifications } from "./retention.js";
import { v7 } from "uuid";
import { money } from "../platform/money.js";
import { serviceClient } from "../platform/rpc/client.js";
import { bind } from "../platform/rpc/binding.js";
import { HealthState } from "../platform/rpc/health.js";
import { RpcServer } from "../platform/rpc/server.js";
import { notificationApi } from "./api.js";
import { startOrderEventsConsumer } from "./consumer.js";
import { announceOverNats, NotificationHub } from "./hub.js";
import { notificationMetrics } from "./metrics.js";
import { indexRowsRead, statementsSent } from "../../test/support/plans.js";
import { RecentNotifications } from "./recent.js";
import { type NotificationRow, NotificationStore, recordOutcome, recordOutcomes } from "./store.js";

const logger = createLogger("notification-test", "error");
const schema = `t${randomBytes(4).toString("hex")}_notification`;
let db: Database;
let store: NotificationStore;

function concluded(customerId: string, status = OrderStatus.CONFIRMED, orderId: string = randomUUID()): OrderConcluded {
  return create(OrderConcludedSchema, { orderId, customerId, status, total: money(12345n, "USD"), reason: status === OrderStatus.REJECTED ? "insufficient funds" : "" });
}

/** Watches a customer's notifications, collecting their order ids, and cancels after `count`. */
async function watchUntil(client: Client<typeof NotificationService>, customerId: string, count: number, received: string[]): Promise<void> {
  const abort = new AbortController();
  try {
    for await (const r of client.watchNotifications({ customerId }, { signal: abort.signal, timeoutMs: 0 })) {
      received.push(r.notification?.orderId ?? "");
      if (received.length === count) abort.abort();
    }
  } catch (error) {
    if (ConnectError.from(error).code !== Code.Canceled) throw error;
  }
}

/** `count` notifications of the customer, written straight into the table. */
async function insertNotifications(customerId: string, count: number): Promise<void> {
  await db.primary.query(
    `INSERT INTO notifications (customer_id, order_id, kind, message)
     SELECT $1, gen_random_uuid()::text, 'order_confirmed', 'confirmed' FROM generate_series(1, $2::int)`,
    [customerId, count],
  );
}

async function countFor(customerId: string): Promise<number> {
  const { rows } = await db.primary.query<{ n: string }>("SELECT count(*) AS n FROM notifications WHERE customer_id = $1", [customerId]);
  return Number(rows[0]?.n);
}

beforeAll(async () => {
  db = new Database({ url: DATABASE_URL, poolMax: 10, schema, applicationName: "notification-test" });
  if (!(await db.ping())) throw new Error(`notification tests need Postgres at ${DATABASE_URL} (set DATABASE_URL)`);
  await migrate({ databaseUrl: DATABASE_URL, service: "notification", schema, logger });
  store = new NotificationStore(db);
});

afterAll(async () => {
  await db?.primary.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  await db?.close();
});

describe("recordOutcome", () => {
  it("records one notification per order outcome (UNIQUE(order_id, kind) as the second guard)", async () => {
    const customer = `c-${randomUUID()}`;
    const event = concluded(customer);
    const first = await db.transaction((tx) => recordOutcome(tx, event));
    expect(first).toMatchObject({ customer_id: customer, order_id: event.orderId, kind: "order_confirmed", message: `Your order ${event.orderId.slice(0, 8)}… for $123.45 is confirmed` });
    expect(await db.transaction((tx) => recordOutcome(tx, event))).toBeUndefined();
    // The same order cancelled later is another outcome.
    expect(await db.transaction((tx) => recordOutcome(tx, { ...event, status: OrderStatus.CANCELLED }))).toMatchObject({ kind: "order_cancelled" });
    expect(await countFor(customer)).toBe(2);
  });

  it("records a batch in one statement: results in event order, a repeat within the batch or of an earlier row gets none", async () => {
    const customer = `c-${randomUUID()}`;
    const earlier = concluded(customer);
    await db.transaction((tx) => recordOutcome(tx, earlier));
    const a = concluded(customer);
    const b = { ...concluded(customer), status: OrderStatus.REJECTED };
    const rows = await db.transaction((tx) => recordOutcomes(tx, [a, earlier, b, a, { ...a, status: OrderStatus.CANCELLED }]));
    expect(rows.map((row) => row?.kind)).toEqual(["order_confirmed", undefined, "order_rejected", undefined, "order_cancelled"]);
    expect(rows[0]?.order_id).toBe(a.orderId);
    expect(await countFor(customer)).toBe(4);
  });

  it("refuses a status that is not an outcome", async () => {
    await expect(db.transaction((tx) => recordOutcome(tx, concluded("x", OrderStatus.PENDING)))).rejects.toThrow(/not an order outcome/);
  });
});

describe("notification retention", () => {
  it("deletes the notifications recorded before the cut, a chunk at a time, and keeps the newer ones", async () => {
    const customer = `c-${randomUUID()}`;
    const record = async (daysAgo: number, kind: string) => {
      const at = new Date(Date.now() - daysAgo * 24 * 60 * 60 * 1000);
      const id = v7({ msecs: at.getTime() });
      await db.primary.query("INSERT INTO notifications (notification_id, customer_id, order_id, kind, message, created_at) VALUES ($1, $2, $3, $4, 'm', $5)", [id, customer, randomUUID(), kind, at]);
      return id;
    };
    await record(40, "order_confirmed");
    await record(35, "order_rejected");
    await record(31, "order_cancelled");
    const recent = await record(5, "order_confirmed");
    const deletedBefore = await counted(notificationMetrics.deleted, {});
    expect(await deleteNotifications(db, new Date(Date.now() - 30 * 24 * 60 * 60 * 1000), 2)).toBe(3);
    const { rows } = await db.primary.query<{ notification_id: string }>("SELECT notification_id FROM notifications WHERE customer_id = $1", [customer]);
    expect(rows.map((r) => r.notification_id)).toEqual([recent]);
    expect((await counted(notificationMetrics.deleted, {})) - deletedBefore).toBe(3);
  });
});

describe("order events consumer", () => {
  let env: BusTestEnv;
  let consumer: BusConsumer | undefined;
  beforeAll(async () => {
    env = await busTestEnv(["order"]);
  });
  afterAll(async () => {
    await consumer?.stop();
    await env?.cleanup();
  });

  async function publish(subject: string, event: OrderConcluded, messageId: string, natsMsgId: string = messageId): Promise<void> {
    const { type, payload } = encodeMessage(event);
    await env.js.publish(`${env.domain("order")}.evt.${subject}`, payload, { msgID: natsMsgId, headers: busHeaders({ type, id: messageId, key: event.orderId }) });
  }

  it("records each outcome once under duplicate delivery", async () => {
    const duplicatesBefore = await counted(notificationMetrics.duplicates, {});
    consumer = await startOrderEventsConsumer({ js: env.js, pool: db.primary, schema, logger, domain: env.domain("order"), dlq: env.dlq, batchSize: 10 });
    const customer = `c-${randomUUID()}`;
    const confirmed = concluded(customer, OrderStatus.CONFIRMED);
    const rejected = concluded(customer, OrderStatus.REJECTED);
    const id = randomUUID();
    const acked = async (seq: number) => (await env.jsm.consumers.info(env.stream("order"), "notification-order-events")).ack_floor.stream_seq === seq;
    await publish("confirmed", confirmed, id);
    // The same message again, past JetStream's de-duplication: UNIQUE(order_id, kind) drops it. Sent once the
    // first is acked, as it would come: in one batch with it, the consumer would skip it by its id already.
    await waitFor(() => acked(1), 10_000, "the first acknowledged");
    await publish("confirmed", confirmed, id, `${id}-republished`);
    await publish("confirmed", confirmed, randomUUID()); // the same outcome under a new id: UNIQUE(order_id, kind) drops it
    await publish("rejected", rejected, randomUUID());
    await waitFor(async () => (await countFor(customer)) >= 2, 10_000, "two notifications");
    await new Promise((r) => setTimeout(r, 500));
    const rows = await store.list(customer, 10, undefined);
    expect(rows.map((r) => [r.order_id, r.kind])).toEqual([
      [rejected.orderId, "order_rejected"],
      [confirmed.orderId, "order_confirmed"],
    ]);
    expect(rows[0]?.message).toMatch(/was rejected: insufficient funds$/);
    // All four were handled (no inbox keeps a copy away): two of them added nothing.
    await waitFor(() => acked(4), 10_000, "all four acknowledged");
    expect((await counted(notificationMetrics.duplicates, {})) - duplicatesBefore).toBe(2);
  });
});

describe("NotificationStore.list", () => {
  it("reads a page deep in a long history from its position, also on the plan kept once prepared: none of the newer notifications", async () => {
    const customer = `c-${randomUUID()}`;
    await insertNotifications(customer, 2_000);
    const oldest = await db.primary.query<{ seq: string }>("SELECT seq FROM notifications WHERE customer_id = $1 ORDER BY seq LIMIT 11", [customer]);
    const before = oldest.rows[10]!.seq;
    let page: Awaited<ReturnType<NotificationStore["list"]>> = [];
    const [statement] = await statementsSent(db.replica, async () => (page = await store.list(customer, 5, before)));
    expect(page.map((row) => String(row.seq))).toEqual(oldest.rows.slice(5, 10).map((r) => r.seq).reverse());
    // The 10 notifications older than the position at most; none of the 1,990 newer ones.
    expect(await indexRowsRead(db.replica, statement!, "notifications_by_customer")).toBeLessThanOrEqual(10);
  });
});

describe("RecentNotifications", () => {
  it("reads from the newest mark a second or more before `since`: none of the customer's older notifications, yet every newer one", async () => {
    const customer = `c-${randomUUID()}`;
    await insertNotifications(customer, 2_000);
    const recent = new RecentNotifications(store);
    const positionOf = (statements: Array<{ text: string; values?: unknown[] }>) => statements.find((s) => s.text.includes("created_at >="))?.values?.[2];
    // Not started: no mark yet, then one younger than a second; the read starts from the beginning.
    const first = await statementsSent(db.primary, () => recent.createdSince([customer], new Date(Date.now() - 60_000)));
    const second = await statementsSent(db.primary, () => recent.createdSince([customer], new Date()));
    expect([positionOf(first), positionOf(second)]).toEqual(["0", "0"]);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const since = new Date();
    const created = concluded(customer);
    await db.transaction((tx) => recordOutcome(tx, created));
    let rows: NotificationRow[] = [];
    const [mark, read] = await statementsSent(db.primary, async () => (rows = await recent.createdSince([customer], since)));
    expect(rows.map((row) => row.order_id)).toEqual([created.orderId]);
    const { rows: older } = await db.primary.query<{ n: string }>("SELECT count(*) AS n FROM notifications WHERE seq <= $1", [positionOf([mark!, read!])]);
    expect(Number(older[0]?.n)).toBeGreaterThanOrEqual(2000);
    // Through the customers' index or the numbers' (after ANALYZE, Postgres may prefer the latter).
    expect(await indexRowsRead(db.primary, read!, ["notifications_by_customer", "notifications_seq_key"])).toBeLessThanOrEqual(1);
  });

  it("started, reads from its first mark however far back `since` looks: none of the notifications recorded before it began", async () => {
    const customer = `c-${randomUUID()}`;
    await insertNotifications(customer, 2_000);
    const recent = new RecentNotifications(store);
    await recent.start();
    const created = concluded(customer);
    await db.transaction((tx) => recordOutcome(tx, created));
    let rows: NotificationRow[] = [];
    // As the hub's first reads: since well before the start, which no mark made since can bound.
    const [, read] = await statementsSent(db.primary, async () => (rows = await recent.createdSince([customer], new Date(Date.now() - 60_000))));
    expect(rows.map((row) => row.order_id)).toEqual([created.orderId]);
    expect(await indexRowsRead(db.primary, read!, ["notifications_by_customer", "notifications_seq_key"])).toBeLessThanOrEqual(1);
  });
});

describe("NotificationService over RPC", () => {
  let hub: NotificationHub;
  let server: RpcServer;
  let client: ReturnType<typeof serviceClient<typeof NotificationService>>;
  // The process that records notifications announces them on its own connection; the hub
  // serving the watches listens on another, through a link the tests can cut.
  let announcer: NatsConnection;
  let stopAnnouncing: () => void;
  let link: NatsLink;
  let listener: NatsConnection;
  const statuses: string[] = [];

  beforeAll(async () => {
    announcer = await connect({ servers: NATS_URL });
    stopAnnouncing = announceOverNats(announcer);
    link = await natsLink();
    listener = await connect({ servers: link.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    void (async () => {
      for await (const status of listener.status()) statuses.push(status.type);
    })();
    const recent = new RecentNotifications(store);
    await recent.start();
    hub = new NotificationHub({ nc: listener, logger, createdSince: (c, s) => recent.createdSince(c, s), recheckMs: 300 });
    server = new RpcServer({ services: [bind(NotificationService, notificationApi({ store, hub }))], health: new HealthState([NotificationService.typeName], []), logger, port: 0, host: "127.0.0.1" });
    const port = await server.listen();
    client = serviceClient(NotificationService, `http://127.0.0.1:${port}`);
  });
  afterAll(async () => {
    hub?.close();
    stopAnnouncing?.();
    await server?.close(1_000);
    await listener?.close();
    await announcer?.close();
    await link?.close();
  });

  it("lists a customer's notifications newest first, page by page", async () => {
    const customer = `c-${randomUUID()}`;
    const events = Array.from({ length: 5 }, () => concluded(customer));
    for (const e of events) await db.transaction((tx) => recordOutcome(tx, e));
    await db.transaction((tx) => recordOutcome(tx, concluded(`other-${randomUUID()}`)));
    const seen: string[] = [];
    let pageToken = "";
    const pages: number[] = [];
    do {
      const page = await client.listNotifications({ customerId: customer, pageSize: 2, pageToken });
      pages.push(page.notifications.length);
      for (const n of page.notifications) {
        expect(n).toMatchObject({ customerId: customer, kind: NotificationKind.ORDER_CONFIRMED });
        expect(n.createdAt).toBeDefined();
        seen.push(n.orderId);
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(pages).toEqual([2, 2, 1]);
    expect(seen).toEqual(events.map((e) => e.orderId).reverse());
    await expect(client.listNotifications({ customerId: customer, pageToken: "garbage" })).rejects.toSatisfy((e: unknown) => ConnectError.from(e).code === Code.InvalidArgument);
    await expect(client.listNotifications({ customerId: "" })).rejects.toSatisfy((e: unknown) => ConnectError.from(e).code === Code.InvalidArgument);
  });

  it("WatchNotifications receives a notification recorded after it subscribed, then ends when the client cancels", async () => {
    const customer = `c-${randomUUID()}`;
    await db.transaction((tx) => recordOutcome(tx, concluded(customer))); // before: not streamed
    await announcer.flush();
    const received: string[] = [];
    const watching = watchUntil(client, customer, 2, received);
    await waitFor(() => hub.subscriberCount(customer) === 1, 5_000, "the watch to subscribe");
    const a = concluded(customer);
    const b = concluded(customer, OrderStatus.REJECTED);
    await db.transaction((tx) => recordOutcome(tx, a));
    await db.transaction((tx) => recordOutcome(tx, concluded(`other-${randomUUID()}`)));
    // A rolled-back insert is never announced.
    await db
      .transaction(async (tx) => {
        await recordOutcome(tx, concluded(customer));
        throw new Error("roll back");
      })
      .catch(() => undefined);
    await db.transaction((tx) => recordOutcome(tx, b));
    await watching;
    expect(received).toEqual([a.orderId, b.orderId]);
    await waitFor(() => hub.subscriberCount(customer) === 0, 5_000, "the cancelled watch to unsubscribe");
  });

  it("catches up on what was recorded while its NATS connection was away", async () => {
    const customer = `c-${randomUUID()}`;
    const catchUpsBefore = await counted(notificationMetrics.catchUps, {});
    const received: string[] = [];
    const watching = watchUntil(client, customer, 2, received);
    await waitFor(() => hub.subscriberCount(customer) === 1, 5_000, "the watch to subscribe");
    const before = concluded(customer);
    const heardBefore = hub.announcements;
    await db.transaction((tx) => recordOutcome(tx, before));
    await waitFor(() => received.length === 1, 5_000, "the first notification");
    // The periodic read may deliver it before its announcement arrives; counted from here, none may arrive while the link is cut.
    await waitFor(() => hub.announcements === heardBefore + 1, 5_000, "the first notification's announcement");
    const heard = hub.announcements;
    await link.cut();
    await waitFor(() => statuses.includes("disconnect"), 5_000, "the hub's connection to drop");
    const during = concluded(customer);
    await db.transaction((tx) => recordOutcome(tx, during));
    await announcer.flush(); // NATS has it, with nobody subscribed: it is gone
    await link.restore();
    await watching;
    expect(received).toEqual([before.orderId, during.orderId]);
    expect(hub.announcements).toBe(heard);
    // The periodic read may have delivered it before the connection was back; the catch-up follows the reconnect.
    await waitFor(async () => (await counted(notificationMetrics.catchUps, {})) - catchUpsBefore === 1, 5_000, "the catch-up on reconnect");
  });

  it("opens a watch while its NATS connection is away, and delivers what is recorded meanwhile", async () => {
    const customer = `c-${randomUUID()}`;
    const disconnects = statuses.filter((s) => s === "disconnect").length;
    await link.cut();
    await waitFor(() => statuses.filter((s) => s === "disconnect").length > disconnects, 5_000, "the hub's connection to drop");
    const received: string[] = [];
    const watching = watchUntil(client, customer, 1, received);
    try {
      await waitFor(() => hub.subscriberCount(customer) === 1, 5_000, "the watch to be open");
      const meanwhile = concluded(customer);
      await db.transaction((tx) => recordOutcome(tx, meanwhile));
      await watching;
      expect(received).toEqual([meanwhile.orderId]);
    } finally {
      await link.restore();
    }
  });

  it("delivers a notification whose announcement never went out (the recording process's NATS connection was down)", async () => {
    const customer = `c-${randomUUID()}`;
    const received: string[] = [];
    const watching = watchUntil(client, customer, 1, received);
    await waitFor(() => hub.subscriberCount(customer) === 1, 5_000, "the watch to subscribe");
    const heard = hub.announcements;
    stopAnnouncing();
    try {
      const unannounced = concluded(customer);
      await db.transaction((tx) => recordOutcome(tx, unannounced));
      await watching;
      expect(received).toEqual([unannounced.orderId]);
      expect(hub.announcements).toBe(heard);
    } finally {
      stopAnnouncing = announceOverNats(announcer);
    }
  });

  it("ends open watch streams cleanly when the server shuts down", async () => {
    const customer = `c-${randomUUID()}`;
    let ended = false;
    const watching = (async () => {
      for await (const _ of client.watchNotifications({ customerId: customer }, { timeoutMs: 0 })) void _;
      ended = true;
    })();
    await waitFor(() => hub.subscriberCount(customer) === 1, 5_000, "the watch to subscribe");
    hub.endStreams();
    await watching;
    expect(ended).toBe(true);
    const started = Date.now();
    await server.close(5_000);
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
