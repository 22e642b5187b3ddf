import { WireType } from "@bufbuild/protobuf/wire";
import { GetOrderResponseSchema } from "../../gen/orderflow/order/v1/order_pb.js";
import { EncodedResponse } from "../platform/rpc/known-encoding.js";

/** A GetOrder answer held encoded, as the order cache keeps it. */
export type GetOrderAnswer = EncodedResponse<typeof GetOrderResponseSchema>;

/** The GetOrder answer for an order's encoding. */
export function getOrderAnswer(order: Uint8Array): GetOrderAnswer {
  return new EncodedResponse(GetOrderResponseSchema, getOrderResponseAround(order));
}

/**
 * A GetOrderResponse's encoding around its order's encoding, which is not decoded: the
 * order field's tag and length (a varint), then the order.
 */
export function getOrderResponseAround(order: Uint8Array): Buffer {
  const prefix = [(GetOrderResponseSchema.field.order.number << 3) | WireType.LengthDelimited];
  let length = order.length;
  for (; length > 0x7f; length >>>= 7) prefix.push((length & 0x7f) | 0x80);
  prefix.push(length);
  // A Buffer: grpc-js writes it without another view made per call.
  const bytes = Buffer.alloc(prefix.length + order.length);
  bytes.set(prefix);
  bytes.set(order, prefix.length);
  return bytes;
}
