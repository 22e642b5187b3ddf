import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import { InventoryService } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { decodePageToken, pageSize, paginate } from "../platform/paging.js";
import { AdjustmentKeyReused, AdjustmentRejected, type ProductStore } from "./store.js";

const pagePosition = z.object({ after: z.string() });

export function inventoryApi(store: ProductStore): ServiceImpl<typeof InventoryService> {
  return {
    async getProduct({ sku }) {
      const product = await store.get(sku);
      if (!product) throw new ConnectError(`product ${sku} not found`, Code.NotFound);
      return { product };
    },

    async listProducts(request) {
      const size = pageSize(request.pageSize);
      const after = decodePageToken(request.pageToken, pagePosition)?.after;
      const page = paginate(await store.list(size + 1, after), size, (last) => ({ after: last.sku }));
      return { products: page.items, nextPageToken: page.nextPageToken };
    },

    async batchGetProducts({ skus }) {
      const products = await store.batchGet(skus);
      const found = new Set(products.map((p) => p.sku));
      return { products, missingSkus: skus.filter((sku) => !found.has(sku)) };
    },

    async adjustStock({ sku, delta, reason, idempotencyKey }) {
      try {
        const product = await store.adjust(sku, delta, reason || "manual adjustment", idempotencyKey);
        if (!product) throw new ConnectError(`product ${sku} not found`, Code.NotFound);
        return { product };
      } catch (error) {
        if (error instanceof AdjustmentRejected) throw new ConnectError(error.message, Code.FailedPrecondition);
        if (error instanceof AdjustmentKeyReused) throw new ConnectError(error.message, Code.AlreadyExists);
        throw error;
      }
    },
  };
}
