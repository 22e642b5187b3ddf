import { randomBytes, randomUUID } from "node:crypto";
import { create, isMessage } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CommitStockSchema, ReleaseStockSchema, type ReserveStock, ReserveStockSchema, StockReleasedSchema, StockReservationFailedSchema } from "../../gen/orderflow/inventory/v1/saga_pb.js";
import { DATABASE_URL, inRecordedTransaction } from "../platform/bus/testkit.js";
import { Database } from "../platform/db.js";
import { createLogger } from "../platform/logger.js";
import { migrate } from "../platform/migrate.js";
import type { Reply } from "../platform/saga-participant.js";
import { OrderConcludedSchema } from "../../gen/orderflow/order/v1/events_pb.js";
import { OrderStatus } from "../../gen/orderflow/order/v1/order_pb.js";
import { commitConfirmed, commitStock, releaseAll, reserveAll, reserveStock } from "./reservations.js";

process.env["LOG_LEVEL"] ??= "warn";
const schema = `inventory_test_${process.pid}_${randomBytes(3).toString("hex")}`;
let db: Database;

beforeAll(async () => {
  await migrate({ databaseUrl: DATABASE_URL, service: "inventory", schema, logger: createLogger("inventory-test", "warn") });
  db = new Database({ url: DATABASE_URL, poolMax: 4, schema, applicationName: "inventory-test" });
});

afterAll(async () => {
  if (!db) return;
  await db.primary.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  await db.close();
});

/** Products with the given stock, under skus unique to the call. */
async function products(available: Record<string, bigint>): Promise<Record<string, string>> {
  const prefix = randomBytes(3).toString("hex");
  const skus = Object.fromEntries(Object.keys(available).map((name) => [name, `${prefix}-${name}`]));
  await db.primary.query(
    `INSERT INTO products (sku, name, price_minor, currency, available) SELECT sku, sku, 100, 'USD', qty FROM unnest($1::text[], $2::bigint[]) AS t(sku, qty)`,
    [Object.values(skus), Object.values(available).map(String)],
  );
  return skus;
}

async function stock(sku: string): Promise<{ available: string; reserved: string; sold: string }> {
  const { rows } = await db.primary.query<{ available: string; reserved: string; sold: string }>("SELECT available, reserved, sold FROM products WHERE sku = $1", [sku]);
  return rows[0]!;
}

const reserve = (orderId: string, lines: Array<[string, bigint]>): ReserveStock => create(ReserveStockSchema, { orderId, lines: lines.map(([sku, quantity]) => ({ sku, quantity })) });

/** What a reply says, without its order id. */
function outcome(reply: Reply): string {
  if (isMessage(reply.message, StockReservationFailedSchema)) return `failed: ${reply.message.reason} [${reply.message.unavailableSkus.join(" ")}]`;
  return reply.subject;
}

/** The reserve commands of one batch over products a, b, c (named by `sku`); `tombstoned` and `held` have a reservation already. */
function batchFor(sku: (name: string) => string, tombstoned: string, held: string): ReserveStock[] {
  const twice = randomUUID();
  return [
    reserve(twice, [[sku("b"), 3n], [sku("a"), 4n]]),
    reserve(randomUUID(), [[sku("a"), 7n]]), // 6 of a left: short
    reserve(tombstoned, [[sku("a"), 1n]]), // released before it arrived: refused
    reserve(randomUUID(), [[sku("a"), 6n], [sku("c"), 1n]]), // c is sold out: none of it
    reserve(held, [[sku("b"), 1n]]), // re-sent: the recorded outcome, nothing moves again
    reserve(twice, [[sku("b"), 3n], [sku("a"), 4n]]), // twice in one batch: reserved once
    reserve(randomUUID(), [[sku("a"), 6n], [sku("b"), 2n]]),
    reserve(randomUUID(), [[sku("zz"), 1n]]), // unknown sku
    reserve(randomUUID(), [[sku("b"), 1n]]), // b: 10 - 3 - 1 (held) - 2 = 4 left
  ];
}

describe("a batch's reservations together (reserveAll)", () => {
  it("gives each order the outcome it gets one after another, and leaves the same stock", async () => {
    const stockOf = { a: 10n, b: 10n, c: 0n };
    const together = await products(stockOf);
    const apart = await products(stockOf);
    const setUp = async (skus: Record<string, string>): Promise<{ tombstoned: string; held: string }> => {
      const tombstoned = randomUUID();
      const held = randomUUID();
      await db.transaction((tx) => releaseAll(tx, [create(ReleaseStockSchema, { orderId: tombstoned })]));
      await db.transaction((tx) => reserveStock(tx, reserve(held, [[skus["b"]!, 1n]])));
      return { tombstoned, held };
    };
    const t = await setUp(together);
    const a = await setUp(apart);
    const nameOf = (skus: Record<string, string>) => (name: string) => skus[name] ?? `${skus["a"]!}-${name}`;

    const batch = await db.transaction((tx) => reserveAll(tx, batchFor(nameOf(together), t.tombstoned, t.held)));
    const oneByOne: Reply[] = [];
    for (const command of batchFor(nameOf(apart), a.tombstoned, a.held)) oneByOne.push(await db.transaction((tx) => reserveStock(tx, command)));

    const plain = (replies: Reply[], skus: Record<string, string>): string[] =>
      replies.map(outcome).map((text) => Object.entries(skus).reduce((s, [name, sku]) => s.replaceAll(sku, name), text));
    expect(plain(batch, together)).toEqual(plain(oneByOne, apart));
    expect(plain(batch, together)).toEqual([
      "inventory.evt.reserved",
      "failed: out of stock: a [a]",
      "failed: order cancelled []",
      "failed: out of stock: c [c]",
      "inventory.evt.reserved",
      "inventory.evt.reserved",
      "inventory.evt.reserved",
      "failed: out of stock: a-zz [a-zz]",
      "inventory.evt.reserved",
    ]);
    for (const name of ["a", "b", "c"]) expect(await stock(together[name]!)).toEqual(await stock(apart[name]!));
    expect(await stock(together["a"]!)).toEqual({ available: "0", reserved: "10", sold: "0" });
    expect(await stock(together["b"]!)).toEqual({ available: "3", reserved: "7", sold: "0" });
  });

  it("knows an order with a reservation already by its id in capitals too", async () => {
    const skus = await products({ a: 10n });
    const released = randomUUID();
    await db.transaction((tx) => releaseAll(tx, [create(ReleaseStockSchema, { orderId: released })]));
    const replies = await db.transaction((tx) => reserveAll(tx, [reserve(randomUUID(), [[skus["a"]!, 1n]]), reserve(released.toUpperCase(), [[skus["a"]!, 1n]])]));
    expect(replies.map(outcome)).toEqual(["inventory.evt.reserved", "failed: order cancelled []"]);
    expect(await stock(skus["a"]!)).toEqual({ available: "9", reserved: "1", sold: "0" });
  });

  it("reserves a batch the stock covers in one statement, down to the last unit", async () => {
    const skus = await products({ a: 1_000n, b: 50n });
    const { result: replies, statements } = await inRecordedTransaction(db, (tx) =>
      reserveAll(
        tx,
        Array.from({ length: 20 }, (_, i) => reserve(randomUUID(), i % 2 === 0 ? [[skus["a"]!, 2n]] : [[skus["a"]!, 1n], [skus["b"]!, 5n]])),
      ),
    );
    expect(statements).toHaveLength(1);
    expect(replies.map(outcome)).toEqual(Array<string>(20).fill("inventory.evt.reserved"));
    expect(await stock(skus["a"]!)).toEqual({ available: "970", reserved: "30", sold: "0" });
    expect(await stock(skus["b"]!)).toEqual({ available: "0", reserved: "50", sold: "0" });
  });

  it("decides a batch one order after another, in a second statement, when the stock falls short", async () => {
    const skus = await products({ a: 5n, b: 5n });
    const { result: replies, statements } = await inRecordedTransaction(db, (tx) =>
      reserveAll(tx, [reserve(randomUUID(), [[skus["a"]!, 3n]]), reserve(randomUUID(), [[skus["a"]!, 3n], [skus["b"]!, 1n]]), reserve(randomUUID(), [[skus["b"]!, 4n], [skus["a"]!, 2n]])]),
    );
    expect(statements).toHaveLength(2);
    expect(replies.map(outcome).map((text) => text.replaceAll(skus["a"]!, "a"))).toEqual(["inventory.evt.reserved", "failed: out of stock: a [a]", "inventory.evt.reserved"]);
    expect(await stock(skus["a"]!)).toEqual({ available: "0", reserved: "5", sold: "0" });
    expect(await stock(skus["b"]!)).toEqual({ available: "1", reserved: "4", sold: "0" });
  });

  it("concurrent batches over the same short products reserve what there is, and no more", async () => {
    const skus = await products({ a: 25n, b: 25n });
    const batches = Array.from({ length: 6 }, (_, n) => Array.from({ length: 10 }, (_, i) => reserve(randomUUID(), [[(n + i) % 2 === 0 ? skus["a"]! : skus["b"]!, 1n]])));
    const replies = (await Promise.all(batches.map((commands) => db.transaction((tx) => reserveAll(tx, commands))))).flat();
    expect(replies.filter((r) => r.subject === "inventory.evt.reserved")).toHaveLength(50);
    expect(await stock(skus["a"]!)).toEqual({ available: "0", reserved: "25", sold: "0" });
    expect(await stock(skus["b"]!)).toEqual({ available: "0", reserved: "25", sold: "0" });
  });

  it("commits a batch's sales in one statement, and a commit of a released reservation moves nothing", async () => {
    const skus = await products({ a: 10n });
    const sold = [randomUUID(), randomUUID()];
    const released = randomUUID();
    await db.transaction((tx) => reserveAll(tx, [reserve(sold[0]!, [[skus["a"]!, 2n]]), reserve(sold[1]!, [[skus["a"]!, 3n]]), reserve(released, [[skus["a"]!, 1n]])]));
    await db.transaction((tx) => releaseAll(tx, [create(ReleaseStockSchema, { orderId: released })]));
    const commits = [...sold, released, sold[0]!].map((orderId) => create(CommitStockSchema, { orderId }));
    expect(await db.transaction((tx) => commitStock(tx, commits))).toEqual([undefined, undefined, undefined, undefined]);
    expect(await stock(skus["a"]!)).toEqual({ available: "5", reserved: "0", sold: "5" });
  });

  it("commits the stock of confirmed orders from their order.evt.confirmed, and of no other outcome", async () => {
    const skus = await products({ a: 10n });
    const [confirmed, rejected] = [randomUUID(), randomUUID()];
    await db.transaction((tx) => reserveAll(tx, [reserve(confirmed, [[skus["a"]!, 2n]]), reserve(rejected, [[skus["a"]!, 3n]])]));
    const events = [
      create(OrderConcludedSchema, { orderId: confirmed, status: OrderStatus.CONFIRMED }),
      create(OrderConcludedSchema, { orderId: rejected, status: OrderStatus.REJECTED }),
      create(OrderConcludedSchema, { orderId: confirmed, status: OrderStatus.CONFIRMED }),
    ];
    expect(await db.transaction((tx) => commitConfirmed(tx, events))).toEqual([undefined, undefined, undefined]);
    expect(await stock(skus["a"]!)).toEqual({ available: "5", reserved: "3", sold: "2" });
    // Delivered again: nothing more moves.
    await db.transaction((tx) => commitConfirmed(tx, events));
    expect(await stock(skus["a"]!)).toEqual({ available: "5", reserved: "3", sold: "2" });
  });

  it("releases a batch's orders in one statement: reservations back to available, sales restocked, tombstones for the rest, the released left alone", async () => {
    const skus = await products({ a: 20n, b: 20n });
    const [reservedOne, reservedTwo, sold, releasedBefore, unseen] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    await db.transaction((tx) =>
      reserveAll(tx, [
        reserve(reservedOne, [[skus["a"]!, 2n], [skus["b"]!, 1n]]),
        reserve(reservedTwo, [[skus["a"]!, 3n]]),
        reserve(sold, [[skus["a"]!, 4n], [skus["b"]!, 5n]]),
        reserve(releasedBefore, [[skus["b"]!, 6n]]),
      ]),
    );
    await db.transaction((tx) => commitStock(tx, [create(CommitStockSchema, { orderId: sold })]));
    await db.transaction((tx) => releaseAll(tx, [create(ReleaseStockSchema, { orderId: releasedBefore })]));
    expect(await stock(skus["a"]!)).toEqual({ available: "11", reserved: "5", sold: "4" });
    expect(await stock(skus["b"]!)).toEqual({ available: "14", reserved: "1", sold: "5" });

    const orders = [reservedOne, sold, unseen, releasedBefore, reservedTwo, reservedOne];
    const { result: replies, statements } = await inRecordedTransaction(db, (tx) =>
      releaseAll(
        tx,
        orders.map((orderId) => create(ReleaseStockSchema, { orderId })),
      ),
    );
    expect(statements).toHaveLength(1);
    expect(replies.map((r) => [r.subject, isMessage(r.message, StockReleasedSchema) ? r.message.orderId : ""])).toEqual(orders.map((orderId) => ["inventory.evt.released", orderId]));
    expect(await stock(skus["a"]!)).toEqual({ available: "20", reserved: "0", sold: "0" });
    expect(await stock(skus["b"]!)).toEqual({ available: "20", reserved: "0", sold: "0" });
    // The order released without a reservation refuses a late reserve; released again, nothing moves.
    expect((await db.transaction((tx) => reserveAll(tx, [reserve(unseen, [[skus["a"]!, 1n]])]))).map(outcome)).toEqual(["failed: order cancelled []"]);
    await db.transaction((tx) => releaseAll(tx, orders.map((orderId) => create(ReleaseStockSchema, { orderId }))));
    expect(await stock(skus["a"]!)).toEqual({ available: "20", reserved: "0", sold: "0" });
    const { rows } = await db.primary.query<{ status: string; n: number }>(
      "SELECT status, count(*)::int AS n FROM reservations WHERE order_id = ANY($1::uuid[]) GROUP BY status",
      [[reservedOne, reservedTwo, sold, releasedBefore, unseen]],
    );
    expect(rows).toEqual([{ status: "RELEASED", n: 5 }]);
  });
});
