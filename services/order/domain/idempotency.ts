import { hash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { type CreateOrderRequest, CreateOrderRequestSchema } from "../../../gen/orderflow/order/v1/order_pb.js";

/** Fingerprint of what was asked, without the key, to tell a retry from a different request. */
export function requestHash(request: CreateOrderRequest): Buffer {
  const canonical = create(CreateOrderRequestSchema, { customerId: request.customerId, items: request.items });
  return hash("sha256", toBinary(CreateOrderRequestSchema, canonical), "buffer");
}
