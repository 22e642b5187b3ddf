import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type DataLoader from "dataloader";
import type { InventoryService, Product } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { batchPerTurn } from "../platform/batch-per-turn.js";
import { errorMessage } from "../platform/errors.js";
import type { Logger } from "../platform/logger.js";
import { deferredCounter } from "../platform/metrics.js";

/** BatchGetProducts takes at most this many SKUs (inventory.proto). */
const MAX_SKUS_PER_CALL = 100;

const lookups = deferredCounter("orderflow_order_catalogue_lookups_total", "Products CreateOrder priced, by where the product came from (failed: inventory could not answer for it)", ["result"]);
const lookupResult = { cached: { result: "cached" }, inventory: { result: "inventory" }, failed: { result: "failed" } } as const;

export interface CatalogueOptions {
  /** How long a product read from inventory prices orders without asking again; 0 = ask every time. */
  cacheMs: number;
  /** Products kept at most; the one read from inventory longest ago is dropped first. */
  maxProducts?: number;
  now?: () => number;
  /** Told when lookups start failing and when inventory answers again: once an outage, not once a call. */
  logger: Logger;
}

/**
 * The products CreateOrder prices against, read from inventory: every SKU asked for in
 * one turn of the event loop is one BatchGetProducts call (and one query in inventory).
 * A product found is kept for `cacheMs`, so a price changed in inventory reaches new
 * orders within that time; a SKU not found is asked for again on every order, so a
 * product added to the catalogue can be ordered at once.
 */
export class Catalogue {
  private readonly loader: DataLoader<string, Product | null>;
  private readonly kept = new Map<string, { product: Product; until: number }>();
  private readonly cacheMs: number;
  private readonly maxProducts: number;
  private readonly now: () => number;
  private readonly logger: Logger;
  /** Products whose lookup failed since inventory last answered; 0 while it answers. */
  private failedSinceAnswered = 0;

  constructor(inventory: Client<typeof InventoryService>, options: CatalogueOptions) {
    this.cacheMs = options.cacheMs;
    this.maxProducts = options.maxProducts ?? 10_000;
    this.now = options.now ?? Date.now;
    this.logger = options.logger;
    this.loader = batchPerTurn(async (skus: readonly string[]) => {
      const unique = [...new Set(skus)];
      const { products } = await inventory.batchGetProducts({ skus: unique });
      const bySku = new Map(products.map((p) => [p.sku, p]));
      return skus.map((sku) => bySku.get(sku) ?? null);
    }, MAX_SKUS_PER_CALL);
  }

  /** The products of `skus` that exist; UNAVAILABLE when inventory cannot answer now, INTERNAL when it fails otherwise. */
  async products(skus: readonly string[]): Promise<Product[]> {
    const now = this.now();
    const products: Product[] = [];
    const asked: string[] = [];
    for (const sku of skus) {
      const entry = this.kept.get(sku);
      if (entry && entry.until > now) products.push(entry.product);
      else asked.push(sku);
    }
    lookups.inc(lookupResult.cached, products.length);
    if (asked.length === 0) return products;
    lookups.inc(lookupResult.inventory, asked.length);
    const found = await this.loader.loadMany(asked);
    const failures = found.filter((entry) => entry instanceof Error);
    if (failures[0]) {
      // CreateOrder then answers UNAVAILABLE or INTERNAL, which the RPC metrics count but do not explain.
      lookups.inc(lookupResult.failed, failures.length);
      const cause = ConnectError.from(failures[0]);
      if (this.failedSinceAnswered === 0) this.logger.warn("inventory cannot answer product lookups; CreateOrder fails until it does", { code: Code[cause.code], error: errorMessage(cause) });
      this.failedSinceAnswered += failures.length;
      throw lookupFailure(cause);
    }
    if (this.failedSinceAnswered > 0) {
      this.logger.info("inventory answers product lookups again", { failedProducts: this.failedSinceAnswered });
      this.failedSinceAnswered = 0;
    }
    for (const entry of found) {
      if (entry && !(entry instanceof Error)) {
        products.push(entry);
        this.keep(entry, now);
      }
    }
    return products;
  }

  private keep(product: Product, now: number): void {
    if (this.cacheMs <= 0) return;
    this.kept.delete(product.sku);
    this.kept.set(product.sku, { product, until: now + this.cacheMs });
    if (this.kept.size > this.maxProducts) this.kept.delete(this.kept.keys().next().value ?? "");
  }
}

/**
 * Inventory's answers a retry of CreateOrder may cure. CANCELED too: the lookups carry no
 * caller's signal, so it means inventory's connection closed under the call (connect-node
 * reports an HTTP/2 stream a dying process left as CANCELED).
 */
const transientCodes: ReadonlySet<Code> = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Canceled]);

/**
 * What CreateOrder answers when inventory failed to read its products: UNAVAILABLE (retry) for
 * what passes, INTERNAL for anything else — a retry would meet the same failure.
 */
function lookupFailure(cause: ConnectError): ConnectError {
  if (transientCodes.has(cause.code)) return new ConnectError(`inventory is unavailable (${Code[cause.code]}): ${cause.rawMessage}`, Code.Unavailable);
  return new ConnectError(`inventory failed the product lookup (${Code[cause.code]}): ${cause.rawMessage}`, Code.Internal);
}
