import { create } from "@bufbuild/protobuf";
import { ConnectError, Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ProductSchema } from "../../../gen/orderflow/inventory/v1/inventory_pb.js";
import { CreateOrderItemSchema } from "../../../gen/orderflow/order/v1/order_pb.js";
import { money } from "../../platform/money.js";
import { priceOrder, rejectRepeatedSkus } from "./pricing.js";

const product = (sku: string, price: number, currency = "USD") => create(ProductSchema, { sku, price: money(price, currency) });
const item = (sku: string, quantity: number) => create(CreateOrderItemSchema, { sku, quantity: BigInt(quantity) });

function failure(fn: () => unknown): ConnectError {
  try {
    fn();
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected an error");
}

describe("pricing", () => {
  it("prices from the catalogue and sums the total in minor units", () => {
    const priced = priceOrder([item("A", 2), item("B", 3)], [product("A", 8900), product("B", 1)]);
    expect(priced).toEqual({ currency: "USD", totalMinor: 17803n, lines: [{ sku: "A", quantity: 2n, unitPriceMinor: 8900n }, { sku: "B", quantity: 3n, unitPriceMinor: 1n }] });
  });

  it("names every unknown SKU as NOT_FOUND with its field path", () => {
    const error = failure(() => priceOrder([item("A", 1), item("X", 1)], [product("A", 1)]));
    expect(error.code).toBe(Code.NotFound);
    expect(error.rawMessage).toBe("unknown SKU(s): X");
    expect(error.details).toHaveLength(1);
  });

  it("refuses mixed currencies and repeated SKUs", () => {
    expect(failure(() => priceOrder([item("A", 1), item("B", 1)], [product("A", 1), product("B", 1, "EUR")])).code).toBe(Code.FailedPrecondition);
    expect(failure(() => rejectRepeatedSkus([item("A", 1), item("A", 2)])).code).toBe(Code.InvalidArgument);
  });
});
