import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Database } from "../../platform/db.js";
import { ordersChanged } from "./changes.js";
import { OrderWatch } from "./watch.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const DATABASE_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";

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
