import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { register } from "prom-client";
import { describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DATABASE_URL, useOrderSchema } from "../../../test/support/order-schema.js";
import { Database } from "../../platform/db.js";
import { createLogger } from "../../platform/logger.js";
import { SagaAdmission } from "./admission.js";

const orderSchema = useOrderSchema("admission");
const logger = createLogger("order-admission-test", "error");

/** Orders awaiting a step (in progress) or finished, written straight into the table. */
async function insertOrders(count: number, inProgress: boolean): Promise<string[]> {
  const ids = Array.from({ length: count }, () => randomUUID());
  await orderSchema.db().primary.query(
    `INSERT INTO orders (order_id, customer_id, status, total_minor, currency, awaiting, step_deadline)
     SELECT id, 'c1', $2, 100, 'USD', $3::text[], CASE WHEN $4 THEN now() + interval '1 hour' END FROM unnest($1::uuid[]) AS id`,
    [ids, inProgress ? "PENDING" : "CONFIRMED", inProgress ? ["fraud"] : [], inProgress],
  );
  return ids;
}

const finish = (ids: readonly string[]) =>
  orderSchema.db().primary.query("UPDATE orders SET status = 'CONFIRMED', awaiting = '{}', step_deadline = NULL WHERE order_id = ANY($1::uuid[])", [ids]);

/** What a gauge without labels reads now. */
async function gaugeValue(name: string): Promise<number | undefined> {
  return (await register.getSingleMetric(name)?.get())?.values[0]?.value;
}

/** Places orders through `admission` (written as in progress); the refusal, if it refused. */
async function refusal(admission: SagaAdmission, write: () => Promise<unknown> = () => insertOrders(1, true)): Promise<ConnectError | undefined> {
  try {
    await admission.admit(write);
    return undefined;
  } catch (error) {
    return ConnectError.from(error);
  }
}

describe("SagaAdmission (real Postgres)", () => {
  it("admits orders up to the bound, counting in-progress orders in Postgres and those it writes, then refuses with RESOURCE_EXHAUSTED without writing", async () => {
    await insertOrders(5, false);
    const inProgress = await insertOrders(3, true);
    const admission = new SagaAdmission(orderSchema.db(), { maxInProgress: 5, countIntervalMs: 60_000 }, logger);
    await admission.start();
    try {
      expect(admission.inProgress).toBe(3);
      // What alerts compare the gauge with (the chart's OrderFlowOrdersInProgressHigh).
      expect(await gaugeValue("orderflow_saga_orders_in_progress_limit")).toBe(5);
      expect(await gaugeValue("orderflow_saga_orders_in_progress")).toBe(3);
      expect(await refusal(admission)).toBeUndefined();
      // An order being written counts, and a count that runs before its write commits does not lose it.
      expect(
        await refusal(admission, async () => {
          expect(admission.inProgress).toBe(5);
          await admission.count();
          expect(admission.inProgress).toBe(5);
          await insertOrders(1, true);
        }),
      ).toBeUndefined();
      expect(admission.inProgress).toBe(5);
      let written = false;
      const refused = await refusal(admission, async () => {
        written = true;
      });
      expect(written).toBe(false);
      expect(refused?.code).toBe(Code.ResourceExhausted);
      expect(refused?.rawMessage).toContain("5 orders are in progress, the most this system takes at once (5)");
      expect(refused?.findDetails(RetryInfoSchema)[0]?.retryDelay).toMatchObject({ seconds: 1n, nanos: 0 });

      // The count sees the written orders and keeps none of them twice.
      await admission.count();
      expect(admission.inProgress).toBe(5);
      expect((await refusal(admission))?.code).toBe(Code.ResourceExhausted);

      // Orders that conclude make room at the next count.
      await finish(inProgress);
      await admission.count();
      expect(admission.inProgress).toBe(2);
      expect(await refusal(admission)).toBeUndefined();
    } finally {
      await admission.stop();
    }
  });

  it("counts again on its interval", async () => {
    const admission = new SagaAdmission(orderSchema.db(), { maxInProgress: 1_000, countIntervalMs: 20, quietCountIntervalMs: 20 }, logger);
    await admission.start();
    try {
      const before = admission.inProgress;
      const ids = await insertOrders(4, true);
      await expect.poll(() => admission.inProgress, { timeout: 5_000 }).toBe(before + 4);
      await finish(ids);
      await expect.poll(() => admission.inProgress, { timeout: 5_000 }).toBe(before);
    } finally {
      await admission.stop();
    }
  });

  it("counts seldom while far below the bound, and at once when an admission reaches half of it", async () => {
    const base = (await orderSchema.db().primary.query<{ n: number }>("SELECT count(*)::int AS n FROM orders WHERE in_flight")).rows[0]?.n ?? 0;
    const admission = new SagaAdmission(orderSchema.db(), { maxInProgress: base + 20, countIntervalMs: 20, quietCountIntervalMs: 60_000 }, logger);
    await admission.start();
    try {
      // Written behind its back, below half the bound: not counted for a minute.
      const unseen = await insertOrders(base < 8 ? 8 - base : 0, true);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(admission.inProgress).toBe(base);
      // Its own admissions take the figure to half the bound: it counts at once, and sees those rows.
      const toHalf = Math.ceil((base + 20) / 2) - base;
      for (let i = 0; i < toHalf; i++) expect(await refusal(admission, async () => undefined)).toBeUndefined();
      await expect.poll(() => admission.inProgress, { timeout: 2_000 }).toBe(Math.max(base, 8));
      await finish(unseen);
    } finally {
      await admission.stop();
    }
  });

  it("admits every order at 0, without counting", async () => {
    await insertOrders(3, true);
    const admission = new SagaAdmission(orderSchema.db(), { maxInProgress: 0 }, logger);
    await admission.start();
    expect(await gaugeValue("orderflow_saga_orders_in_progress_limit")).toBe(0);
    for (let i = 0; i < 20; i++) expect(await refusal(admission, async () => undefined)).toBeUndefined();
    expect(admission.inProgress).toBe(0);
    await admission.stop();
  });

  it("keeps its last count while Postgres cannot be asked", async () => {
    const own = new Database({ url: DATABASE_URL, poolMax: 1, backgroundPoolMax: 1, schema: orderSchema.schema, applicationName: "order-admission-test" });
    const admission = new SagaAdmission(own, { maxInProgress: 1_000_000, countIntervalMs: 60_000 }, logger);
    await admission.start();
    const counted = admission.inProgress;
    await insertOrders(2, true);
    await own.close();
    await admission.count();
    expect(admission.inProgress).toBe(counted);
    await admission.stop();

    // With no count at all, it admits up to the bound on its own admissions.
    const unreachable = new Database({ url: "postgres://postgres@127.0.0.1:1/orderflow", poolMax: 1, backgroundPoolMax: 1, schema: orderSchema.schema, applicationName: "order-admission-test" });
    const blind = await new SagaAdmission(unreachable, { maxInProgress: 2, countIntervalMs: 60_000 }, logger).start();
    const nothing = async () => undefined;
    expect(await refusal(blind, nothing)).toBeUndefined();
    expect(await refusal(blind, nothing)).toBeUndefined();
    expect((await refusal(blind, nothing))?.code).toBe(Code.ResourceExhausted);
    await blind.stop();
    await unreachable.close();
  });
});
