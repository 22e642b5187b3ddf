import { WireType } from "@bufbuild/protobuf/wire";
import { GetOrderResponseSchema } from "../../gen/orderflow/order/v1/order_pb.js";

/**
 * A GetOrderResponse's encoding around its order's encoding, which is not decoded: the
 * order field's tag and length (a varint), then the order.
 */
export function getOrderResponseAround(order: Uint8Array): Uint8Array {
  const prefix = [(GetOrderResponseSchema.field.order.number << 3) | WireType.LengthDelimited];
  let length = order.length;
  for (; length > 0x7f; length >>>= 7) prefix.push((length & 0x7f) | 0x80);
  prefix.push(length);
  const bytes = new Uint8Array(prefix.length + order.length);
  bytes.set(prefix);
  bytes.set(order, prefix.length);
  return bytes;
}
