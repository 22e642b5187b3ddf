import { create, toBinary } from "@bufbuild/protobuf";
import { createContextValues, createHandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { OrderService, GetOrderResponseSchema } from "../../../gen/orderflow/order/v1/order_pb.js";
import { EncodedResponse, knownEncoding, writesKnownEncoding } from "./known-encoding.js";

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

describe("EncodedResponse", () => {
  it("hands the bytes on as they are where the transport writes known encodings, with one stand-in for every call", () => {
    const encoded = new EncodedResponse(GetOrderResponseSchema, bytes);
    const answered = encoded.answer(contextOf(true));
    expect(knownEncoding(answered)).toBe(bytes);
    expect(encoded.answer(contextOf(true))).toBe(answered);
    expect(knownEncoding(create(GetOrderResponseSchema))).toBeUndefined();
  });

  it("elsewhere answers the decoded message it is given, or decodes the bytes", () => {
    const encoded = new EncodedResponse(GetOrderResponseSchema, bytes);
    expect(encoded.answer(contextOf(false), response)).toBe(response);
    const decoded = encoded.answer(contextOf(false));
    expect(knownEncoding(decoded)).toBeUndefined();
    expect(decoded).toEqual(response);
  });
});
