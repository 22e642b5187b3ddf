import { randomUUID } from "node:crypto";
import type { EventEmitter } from "node:events";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Database } from "../../platform/db.js";
import { ordersChanged } from "./changes.js";
import { OrderWatch } from "./watch.js";
import { DATABASE_URL, useOrderSchema } from "../../../test/support/order-schema.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";

let db: Database;
beforeAll(() => {
  db = new Database({ url: DATABASE_URL, poolMax: 1, schema: "public", applicationName: "order-watch-test" });
});
afterAll(async () => {
  await db?.close();
});

describe("order change notices", () => {
  it("go out on core NATS, one subject per order, to whoever subscribed", async () => {
    const nc = await connect({ servers: NATS_URL });
    const listener = await connect({ servers: NATS_URL });
    const watch = new OrderWatch(db, nc);
    try {
      const heard: string[] = [];
      listener.subscribe("orderflow.order-changed.*", { callback: (_err, msg) => void heard.push(msg.subject) });
      await listener.flush();
      ordersChanged(["o-1", "o-2"]);
      await nc.flush();
      await listener.flush();
      expect(heard.sort()).toEqual(["orderflow.order-changed.o-1", "orderflow.order-changed.o-2"]);
    } finally {
      await watch.stop();
      await nc.close();
      await listener.close();
    }
  });

  it("never fail the write that announced them, even with the connection closed", async () => {
    const nc = await connect({ servers: NATS_URL });
    const watch = new OrderWatch(db, nc);
    await nc.close();
    try {
      expect(() => ordersChanged(["o-closed"])).not.toThrow();
    } finally {
      await watch.stop();
    }
  });
});

describe("OrderWatch.watch", () => {
  const orderSchema = useOrderSchema("watch", { poolMax: 2 });
  let orders: Database;
  beforeAll(() => {
    orders = orderSchema.db();
  });

  it("leaves no listener behind when the stream ends before any change: a missing order, a finished one", async () => {
    const nc = await connect({ servers: NATS_URL });
    const watch = new OrderWatch(orders, nc);
    const changes = (watch as unknown as { changes: EventEmitter }).changes;
    try {
      const finished = randomUUID();
      await orders.primary.query("INSERT INTO orders (order_id, customer_id, status, total_minor, currency) VALUES ($1, 'c1', 'CONFIRMED', 100, 'USD')", [finished]);
      const missing = randomUUID();
      const seen: string[] = [];
      for await (const order of watch.watch(finished, new AbortController().signal)) seen.push(order.orderId);
      for await (const order of watch.watch(missing, new AbortController().signal)) seen.push(order.orderId);
      expect(seen).toEqual([finished]);
      expect(changes.listenerCount(finished)).toBe(0);
      expect(changes.listenerCount(missing)).toBe(0);
    } finally {
      await watch.stop();
      await nc.close();
    }
  });

  it("once its streams were ended for shutdown, answers a new watch with the order as it is and ends it", async () => {
    const nc = await connect({ servers: NATS_URL });
    const watch = new OrderWatch(orders, nc);
    try {
      const pending = randomUUID();
      await orders.primary.query(
        "INSERT INTO orders (order_id, customer_id, status, total_minor, currency, awaiting, step_deadline) VALUES ($1, 'c1', 'PENDING', 100, 'USD', '{fraud}', now() + interval '1 minute')",
        [pending],
      );
      watch.endStreams();
      const seen: string[] = [];
      for await (const order of watch.watch(pending, new AbortController().signal)) seen.push(order.orderId);
      expect(seen).toEqual([pending]);
    } finally {
      await watch.stop();
      await nc.close();
    }
  });
});
