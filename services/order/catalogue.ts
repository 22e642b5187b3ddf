import { Code, ConnectError, type Client } from "@connectrpc/connect";
import DataLoader from "dataloader";
import type { InventoryService, Product } from "../../gen/orderflow/inventory/v1/inventory_pb.js";

/** BatchGetProducts takes at most this many SKUs (inventory.proto). */
const MAX_SKUS_PER_CALL = 100;

/**
 * The products CreateOrder prices against, read from inventory. Lookups that arrive
 * while the event loop is busy go out together: every SKU asked for in one turn of the
 * loop is one BatchGetProducts call, so under load the calls (and inventory's queries)
 * grow fewer instead of one per order, and at low load nothing waits.
 */
export class Catalogue {
  private readonly loader: DataLoader<string, Product | null>;

  constructor(inventory: Client<typeof InventoryService>) {
    this.loader = new DataLoader(
      async (skus: readonly string[]) => {
        const unique = [...new Set(skus)];
        const { products } = await inventory.batchGetProducts({ skus: unique });
        const bySku = new Map(products.map((p) => [p.sku, p]));
        return skus.map((sku) => bySku.get(sku) ?? null);
      },
      { cache: false, maxBatchSize: MAX_SKUS_PER_CALL, batchScheduleFn: (callback) => setImmediate(callback) },
    );
  }

  /** The products of `skus` that exist; UNAVAILABLE when inventory cannot answer. */
  async products(skus: readonly string[]): Promise<Product[]> {
    const found = await this.loader.loadMany(skus);
    const products: Product[] = [];
    for (const entry of found) {
      if (entry instanceof Error) {
        throw new ConnectError(`inventory is unavailable: ${ConnectError.from(entry).rawMessage}`, Code.Unavailable);
      }
      if (entry) products.push(entry);
    }
    return products;
  }
}
