import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { GetOrderResponseSchema, OrderSchema } from "../../gen/orderflow/order/v1/order_pb.js";
import { getOrderResponseAround } from "./response-encoding.js";

describe("getOrderResponseAround", () => {
  // An empty order, then lengths that take one, two and three varint bytes.
  it.each([0, 1, 5, 3_000])("is byte for byte what protobuf-es encodes, for an order with %i items", (itemCount) => {
    const order = create(OrderSchema, {
      orderId: "8d0c1c52-5a4b-4a61-9c54-8a0d8f1f2e3d",
      items: Array.from({ length: itemCount }, (_, i) => ({ sku: `SKU-${i}`, quantity: BigInt(i + 1) })),
    });
    const orderBytes = itemCount === 0 ? new Uint8Array() : toBinary(OrderSchema, order);
    const expected = toBinary(GetOrderResponseSchema, create(GetOrderResponseSchema, { order: itemCount === 0 ? create(OrderSchema) : order }));
    expect(getOrderResponseAround(orderBytes)).toEqual(Buffer.from(expected));
  });
});
