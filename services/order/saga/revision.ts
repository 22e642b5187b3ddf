import type { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { statusName } from "../domain/status.js";

/**
 * An order's saga revision as SQL (of the row, or of `alias`'s row): what a reply's decision
 * depends on besides the order's fixed contents — status, version, the steps awaited and the
 * compensation's target (`stock_reserved` and `charged` change only with the steps awaited). Every
 * transition changes it. The step clock (deadline, attempts) is not part of it: a deadline
 * deferral or a re-send leaves a decision made on the order valid, so the reply applier's
 * guarded write does not fail on them.
 */
export function sagaRevision(alias?: string): string {
  const column = (name: string): string => (alias ? `${alias}.${name}` : name);
  return `concat_ws('/', ${column("status")}, ${column("version")}, array_to_string(${column("awaiting")}, ','), ${column("compensate_to")})`;
}

/** The saga revision `sagaRevision` reads from the row a transition writes for an order in this state. */
export function sagaRevisionOf(order: { status: OrderStatus; version: bigint; awaiting: readonly string[]; compensateTo: OrderStatus | undefined }): string {
  // The row keeps no compensation target once nothing is awaited (see `planAdvance`).
  const compensateTo = order.awaiting.length > 0 && order.compensateTo !== undefined ? [statusName(order.compensateTo)] : [];
  return [statusName(order.status), order.version.toString(), order.awaiting.join(","), ...compensateTo].join("/");
}
