import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { OrderService } from "../../gen/orderflow/order/v1/order_pb.js";
import { beforeSequence, decodePageToken, pageSize, paginate } from "../platform/paging.js";
import { requestHash } from "./domain/idempotency.js";
import { priceOrder, rejectRepeatedSkus } from "./domain/pricing.js";
import type { PoolClient } from "../platform/db.js";
import type { OrderCache } from "./cache.js";
import type { Catalogue } from "./catalogue.js";
import type { CustomerRateLimit } from "./rate-limit.js";
import type { SagaAdmission } from "./saga/admission.js";
import type { OrderWatch } from "./saga/watch.js";
import { IdempotencyConflict, type SagaStart, type OrderStore, readOrder } from "./store.js";

/** Order ids as Postgres writes them: a UUID may arrive in upper case, and the cache and the reads key by the stored form. */
const canonical = (orderId: string): string => orderId.toLowerCase();

export interface OrderApiDependencies {
  store: OrderStore;
  catalogue: Catalogue;
  /** The saga's first step, started inside the creating transaction. */
  sagaStart: SagaStart;
  /** Cancels inside a transaction on the primary. */
  cancel: (tx: PoolClient, orderId: string, reason: string) => Promise<void>;
  watch: OrderWatch;
  cache: OrderCache;
  /** Refuses new orders while the sagas in progress are at their bound. */
  admission: Pick<SagaAdmission, "admit">;
  rateLimit: CustomerRateLimit;
}

export function orderApi({ store, catalogue, sagaStart, cancel, watch, cache, admission, rateLimit }: OrderApiDependencies): ServiceImpl<typeof OrderService> {
  return {
    async createOrder(request) {
      rejectRepeatedSkus(request.items);
      const idempotencyKey = request.idempotencyKey || undefined;
      try {
        // Refused at the bound of orders in progress, a call costs nothing more: not even its request's
        // fingerprint, or a retry's lookup of the order it made, which it gets once the system has room again.
        return await admission.admit(async () => {
          const hash = idempotencyKey ? requestHash(request) : undefined;
          try {
            await rateLimit.check(request.customerId);
          } catch (limited) {
            // A retry of a request that already made its order gets that order, limit or not.
            const earlier = idempotencyKey && limited instanceof ConnectError && limited.code === Code.ResourceExhausted ? await store.earlier(request.customerId, idempotencyKey, hash) : undefined;
            if (!earlier) throw limited;
            return { order: earlier };
          }
          const products = await catalogue.products(request.items.map((i) => i.sku));
          const priced = priceOrder(request.items, products);
          const { order } = await store.create({ customerId: request.customerId, priced, idempotencyKey, requestHash: hash }, sagaStart);
          return { order };
        });
      } catch (error) {
        if (error instanceof IdempotencyConflict) throw new ConnectError(error.message, Code.AlreadyExists);
        throw error;
      }
    },

    async getOrder(request, context) {
      const orderId = canonical(request.orderId);
      const cached = await cache.getAnswer(orderId);
      if (cached) return cached.answer(context);
      const order = await store.get(orderId);
      if (!order) throw new ConnectError(`order ${orderId} not found`, Code.NotFound);
      // A terminal order read from Postgres is encoded once, for the cache and the answer.
      const offered = await cache.offer(order);
      return offered ? offered.answer(context, { order }) : { order };
    },

    async listOrders(request) {
      const size = pageSize(request.pageSize);
      const before = decodePageToken(request.pageToken, beforeSequence)?.before;
      const rows = await store.list(request.customerId, request.statuses, size + 1, before);
      const page = paginate(rows, size, (last) => ({ before: last.seq }));
      return { orders: page.items.map((r) => r.order), nextPageToken: page.nextPageToken };
    },

    async cancelOrder(request) {
      const orderId = canonical(request.orderId);
      const reason = request.reason;
      const order = await store.db.transaction(async (tx) => {
        await cancel(tx, orderId, reason);
        return readOrder(tx, orderId);
      });
      return { order };
    },

    async *watchOrder(request, context) {
      const orderId = canonical(request.orderId);
      let found = false;
      for await (const order of watch.watch(orderId, context.signal)) {
        found = true;
        yield { order };
      }
      if (!found) throw new ConnectError(`order ${orderId} not found`, Code.NotFound);
    },
  };
}
