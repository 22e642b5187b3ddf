import { create, toBinary } from "@bufbuild/protobuf";
import { createContextValues, createHandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { OrderService, GetOrderResponseSchema } from "../../../gen/orderflow/order/v1/order_pb.js";
import { encodedResponse, knownEncoding, writesKnownEncoding } from "./known-encoding.js";

function contextOf(writesKnown: boolean) {
  return createHandlerContext({
    service: OrderService,
    method: OrderService.method.getOrder,
    protocolName: writesKnown ? "grpc" : "connect",
    requestMethod: "POST",
    url: "http://localhost/orderflow.order.v1.OrderService/GetOrder",
    contextValues: createContextValues().set(writesKnownEncoding, writesKnown),
  });
}

const response = create(GetOrderResponseSchema, { order: { orderId: "5f0c6f1e-0000-4000-8000-000000000001", customerId: "alice" } });
const bytes = toBinary(GetOrderResponseSchema, response);

describe("encodedResponse", () => {
  it("hands the bytes on as they are where the transport writes known encodings", () => {
    let built = 0;
    const answered = encodedResponse(GetOrderResponseSchema, () => (built++, bytes), contextOf(true));
    expect(knownEncoding(answered)).toBe(bytes);
    expect(built).toBe(1);
  });

  it("elsewhere answers the decoded message it is given without building the bytes, or decodes them", () => {
    let built = 0;
    const lazy = () => (built++, bytes);
    expect(encodedResponse(GetOrderResponseSchema, lazy, contextOf(false), response)).toBe(response);
    expect(built).toBe(0);
    const decoded = encodedResponse(GetOrderResponseSchema, lazy, contextOf(false));
    expect(knownEncoding(decoded)).toBeUndefined();
    expect(decoded).toEqual(response);
    expect(built).toBe(1);
  });
});
