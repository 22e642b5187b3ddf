import type { ServiceImpl } from "@connectrpc/connect";
import type { FraudService } from "../../gen/orderflow/fraud/v1/fraud_pb.js";
import type { FraudAssessor } from "./assessor.js";

export function fraudApi(assessor: FraudAssessor): Partial<ServiceImpl<typeof FraudService>> {
  return {
    /** A dry run: the decision the saga would make now, without counting the order. */
    async assessOrder(request) {
      const assessment = await assessor.dryRun({
        orderId: request.orderId,
        customerId: request.customerId,
        total: request.total ? { amountMinor: request.total.amountMinor, currency: request.total.currency } : undefined,
      });
      return { decision: assessment.decision, reasons: assessment.reasons.map((r) => r.message) };
    },
  };
}
