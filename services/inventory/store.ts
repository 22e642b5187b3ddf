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

  /** Changes available stock by delta; refuses to go below zero. */
  async adjust(sku: string, delta: bigint, reason: string): Promise<Product | undefined> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<ProductRow>(
        prepared(`UPDATE products SET available = available + $2, updated_at = now() WHERE sku = $1 AND available + $2 >= 0 RETURNING ${columns}`, [sku, delta.toString()]),
      );
      const row = rows[0];
      if (!row) {
        const exists = await tx.query<{ available: string }>(prepared("SELECT available FROM products WHERE sku = $1", [sku]));
        if (exists.rows[0]) throw new AdjustmentRejected(`only ${exists.rows[0].available} units of ${sku} are available`);
        return undefined;
      }
      await tx.query(prepared("INSERT INTO stock_adjustments (sku, delta, reason) VALUES ($1, $2, $3)", [sku, delta.toString(), reason]));
      return toProduct(row);
    });
  }

  private async select(q: Queryable, skus: string[]): Promise<Product[]> {
    const { rows } = await q.query<ProductRow>(prepared(`SELECT ${columns} FROM products WHERE sku = ANY($1::text[]) ORDER BY sku`, [skus]));
    return rows.map(toProduct);
  }
}
