import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { PaymentService } from "../../gen/orderflow/payment/v1/payment_pb.js";
import { beforeSequence, decodePageToken, pageSize, paginate } from "../platform/paging.js";
import { fieldError } from "../platform/rpc/violations.js";
import { BalanceOverflow, CurrencyMismatch, type PaymentStore, TopUpConflict } from "./store.js";


// Field numbers in TopUpWalletRequest / Money, for violations.
const amountField = 2;
const amountMinorField = 1;

export function paymentApi(store: PaymentStore): ServiceImpl<typeof PaymentService> {
  return {
    async getWallet({ customerId }) {
      const wallet = await store.getWallet(customerId);
      if (!wallet) throw new ConnectError(`customer ${customerId} has no wallet`, Code.NotFound);
      return { wallet };
    },

    async topUpWallet({ customerId, amount, idempotencyKey }) {
      const amountMinor = amount?.amountMinor ?? 0n;
      if (amountMinor <= 0n) {
        throw fieldError(Code.InvalidArgument, "amount.amount_minor: a top-up must be greater than 0", [
          { path: [["amount", amountField], ["amount_minor", amountMinorField]], ruleId: "amount.positive", message: "must be greater than 0" },
        ]);
      }
      try {
        const { wallet } = await store.topUp({ customerId, amountMinor, currency: amount?.currency ?? "", idempotencyKey });
        return { wallet };
      } catch (error) {
        if (error instanceof TopUpConflict) throw new ConnectError(error.message, Code.AlreadyExists);
        if (error instanceof CurrencyMismatch || error instanceof BalanceOverflow) throw new ConnectError(error.message, Code.FailedPrecondition);
        throw error;
      }
    },

    async getPayment({ paymentId }) {
      const payment = await store.getPayment(paymentId);
      if (!payment) throw new ConnectError(`payment ${paymentId} not found`, Code.NotFound);
      return { payment };
    },

    async listPayments(request) {
      const size = pageSize(request.pageSize);
      const before = decodePageToken(request.pageToken, beforeSequence)?.before;
      const page = paginate(await store.list(request.customerId, size + 1, before), size, (last) => ({ before: last.seq }));
      return { payments: page.items.map((r) => r.payment), nextPageToken: page.nextPageToken };
    },
  };
}
