import { Code } from "@connectrpc/connect";
import type { Product } from "../../../gen/orderflow/inventory/v1/inventory_pb.js";
import type { CreateOrderItem } from "../../../gen/orderflow/order/v1/order_pb.js";
import { fieldError } from "../../platform/rpc/violations.js";

export interface PricedLine {
  sku: string;
  quantity: bigint;
  unitPriceMinor: bigint;
}

export interface PricedOrder {
  lines: PricedLine[];
  totalMinor: bigint;
  currency: string;
}

const itemsField = 2;
const skuField = 1;

/** Items may name each SKU once: a repeated SKU is almost always a client bug. */
export function rejectRepeatedSkus(items: CreateOrderItem[]): void {
  const seen = new Map<string, number>();
  const problems = items.flatMap((item, index) => {
    const first = seen.get(item.sku);
    seen.set(item.sku, first ?? index);
    if (first === undefined) return [];
    return [{ path: [["items", itemsField, index], ["sku", skuField]] as Array<[string, number, number?]>, ruleId: "sku.unique", message: `repeats the SKU of items[${first}]; put the total quantity on one item` }];
  });
  if (problems.length > 0) throw fieldError(Code.InvalidArgument, `items: ${problems.length} repeated SKU(s)`, problems);
}

/** Prices each item from the catalogue; prices never come from the client. */
export function priceOrder(items: CreateOrderItem[], products: Product[]): PricedOrder {
  const bySku = new Map(products.map((p) => [p.sku, p]));
  const missing = items.flatMap((item, index) => (bySku.has(item.sku) ? [] : [{ item, index }]));
  if (missing.length > 0) {
    throw fieldError(
      Code.NotFound,
      `unknown SKU(s): ${missing.map((m) => m.item.sku).join(", ")}`,
      missing.map(({ item, index }) => ({ path: [["items", itemsField, index], ["sku", skuField]], ruleId: "sku.exists", message: `no product with SKU ${item.sku}` })),
    );
  }
  const lines = items.map((item) => {
    const product = bySku.get(item.sku)!;
    return { sku: item.sku, quantity: item.quantity, unitPriceMinor: product.price?.amountMinor ?? 0n, currency: product.price?.currency ?? "" };
  });
  const currencies = new Set(lines.map((l) => l.currency));
  if (currencies.size > 1) throw fieldError(Code.FailedPrecondition, `items are priced in different currencies (${[...currencies].join(", ")}); place one order per currency`, []);
  return {
    lines: lines.map(({ sku, quantity, unitPriceMinor }) => ({ sku, quantity, unitPriceMinor })),
    totalMinor: lines.reduce((sum, l) => sum + l.unitPriceMinor * l.quantity, 0n),
    currency: lines[0]?.currency ?? "USD",
  };
}
