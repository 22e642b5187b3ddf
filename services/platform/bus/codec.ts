import { createRegistry, type DescMessage, fromBinary, toBinary, type Message, type Registry } from "@bufbuild/protobuf";
import { file_orderflow_fraud_v1_fraud } from "../../../gen/orderflow/fraud/v1/fraud_pb.js";
import { file_orderflow_inventory_v1_saga } from "../../../gen/orderflow/inventory/v1/saga_pb.js";
import { file_orderflow_order_v1_events } from "../../../gen/orderflow/order/v1/events_pb.js";
import { file_orderflow_payment_v1_payment } from "../../../gen/orderflow/payment/v1/payment_pb.js";

/**
 * Every message the saga sends over the bus, looked up by its type name (the `of-type`
 * header). Services may pass their own registry to the consumer if they need more types.
 */
export const sagaRegistry: Registry = createRegistry(
  file_orderflow_fraud_v1_fraud,
  file_orderflow_inventory_v1_saga,
  file_orderflow_payment_v1_payment,
  file_orderflow_order_v1_events,
);

/** Thrown when a payload cannot be decoded: the consumer dead-letters such messages at once. */
export class DecodeError extends Error {
  override readonly name = "DecodeError";
}

/** Binary encoding of a Protobuf message (any message created with `create(Schema, …)`). */
export function encodeMessage(message: Message, registry: Registry = sagaRegistry): { type: string; payload: Uint8Array } {
  return { type: message.$typeName, payload: toBinary(registeredType(message, registry), message) };
}

/** The message's schema in the registry; throws for a type the bus does not carry. */
export function registeredType(message: Message, registry: Registry = sagaRegistry): DescMessage {
  const desc = registry.getMessage(message.$typeName);
  if (!desc) throw new Error(`message type ${message.$typeName} is not in the bus registry`);
  return desc;
}

/** Decodes a payload of the given type name; throws DecodeError for unknown types or bad bytes. */
export function decodeMessage(type: string, payload: Uint8Array, registry: Registry = sagaRegistry): Message {
  if (type === "") throw new DecodeError("message has no of-type header");
  const desc = registry.getMessage(type);
  if (!desc) throw new DecodeError(`unknown message type ${type}`);
  try {
    return fromBinary(desc, payload);
  } catch (err) {
    throw new DecodeError(`cannot decode ${type}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
