import { create } from "@bufbuild/protobuf";
import { type Product, ProductSchema } from "../../gen/orderflow/inventory/v1/inventory_pb.js";
import { type Database, prepared, type Queryable } from "../platform/db.js";
import { money } from "../platform/money.js";
import { timestamp } from "../platform/time.js";

interface ProductRow {
  sku: string;
  name: string;
  description: string;
  price_minor: string;
  currency: string;
  available: string;
  reserved: string;
  sold: string;
  updated_at: Date;
}

const columns = "sku, name, description, price_minor, currency, available, reserved, sold, updated_at";

function toProduct(row: ProductRow): Product {
  return create(ProductSchema, {
    sku: row.sku,
    name: row.name,
    description: row.description,
    price: money(row.price_minor, row.currency),
    available: BigInt(row.available),
    reserved: BigInt(row.reserved),
    sold: BigInt(row.sold),
    updatedAt: timestamp(row.updated_at),
  });
}

export class AdjustmentRejected extends Error {}

/** An adjustment whose idempotency key was used for another adjustment of the SKU. */
export class AdjustmentKeyReused extends Error {}

/** The catalogue in Postgres: queries on the replica, changes on the primary. */
export class ProductStore {
  constructor(private readonly db: Database) {}

  async get(sku: string): Promise<Product | undefined> {
    return this.db.readFresh(async (q) => (await this.select(q, [sku]))[0]);
  }

  /** Products in SKU order after `afterSku`, at most `limit`. */
  async list(limit: number, afterSku: string | undefined): Promise<Product[]> {
    const { rows } = await this.db.replica.query<ProductRow>(prepared(`SELECT ${columns} FROM products WHERE sku > $1 ORDER BY sku LIMIT $2`, [afterSku ?? "", limit]));
    return rows.map(toProduct);
  }

  async batchGet(skus: string[]): Promise<Product[]> {
    const found = await this.select(this.db.replica, skus);
    if (found.length === skus.length || this.db.replica === this.db.primary) return found;
    return this.select(this.db.primary, skus);
  }

  /**
   * Changes available stock by delta; refuses to go below zero. With an idempotency key, once
   * per SKU and key: the product's row lock makes a twin with the same key wait, then find the
   * adjustment it made (the unique index on SKU and key stands behind this). Undefined: no such SKU.
   */
  async adjust(sku: string, delta: bigint, reason: string, idempotencyKey = ""): Promise<Product | undefined> {
    return this.db.transaction(async (tx) => {
      if (idempotencyKey !== "") {
        const locked = await tx.query<ProductRow>(prepared(`SELECT ${columns} FROM products WHERE sku = $1 FOR UPDATE`, [sku]));
        const product = locked.rows[0];
        if (!product) return undefined;
        // Read once the lock is ours, in a statement of its own: a twin that held it has
        // committed, and only a statement begun after that sees its row.
        const { rows: prior } = await tx.query<{ delta: string; reason: string }>(
          prepared("SELECT delta, reason FROM stock_adjustments WHERE sku = $1 AND idempotency_key = $2", [sku, idempotencyKey]),
        );
        const made = prior[0];
        if (made) {
          if (made.delta === delta.toString() && made.reason === reason) return toProduct(product);
          throw new AdjustmentKeyReused(`idempotency_key ${idempotencyKey} was used for another adjustment of ${sku} (delta ${made.delta}, reason "${made.reason}")`);
        }
      }
      const { rows } = await tx.query<ProductRow>(
        prepared(`UPDATE products SET available = available + $2, updated_at = now() WHERE sku = $1 AND available + $2 >= 0 RETURNING ${columns}`, [sku, delta.toString()]),
      );
      const row = rows[0];
      if (!row) {
        const exists = await tx.query<{ available: string }>(prepared("SELECT available FROM products WHERE sku = $1", [sku]));
        if (exists.rows[0]) throw new AdjustmentRejected(`only ${exists.rows[0].available} units of ${sku} are available`);
        return undefined;
      }
      await tx.query(prepared("INSERT INTO stock_adjustments (sku, delta, reason, idempotency_key) VALUES ($1, $2, $3, $4)", [sku, delta.toString(), reason, idempotencyKey || null]));
      return toProduct(row);
    });
  }

  private async select(q: Queryable, skus: string[]): Promise<Product[]> {
    const { rows } = await q.query<ProductRow>(prepared(`SELECT ${columns} FROM products WHERE sku = ANY($1::text[]) ORDER BY sku`, [skus]));
    return rows.map(toProduct);
  }
}
