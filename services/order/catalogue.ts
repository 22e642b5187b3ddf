import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type DataLoader from "dataloader";
import type { InventoryService, Product } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { batchPerTurn } from "../platform/batch-per-turn.js";

/** BatchGetProducts takes at most this many SKUs (inventory.proto). */
const MAX_SKUS_PER_CALL = 100;

/**
 * The products CreateOrder prices against, read from inventory: every SKU asked for in
 * one turn of the event loop is one BatchGetProducts call (and one query in inventory).
 */
export class Catalogue {
  private readonly loader: DataLoader<string, Product | null>;

  constructor(inventory: Client<typeof InventoryService>) {
    this.loader = batchPerTurn(async (skus: readonly string[]) => {
      const unique = [...new Set(skus)];
      const { products } = await inventory.batchGetProducts({ skus: unique });
      const bySku = new Map(products.map((p) => [p.sku, p]));
      return skus.map((sku) => bySku.get(sku) ?? null);
    }, MAX_SKUS_PER_CALL);
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
