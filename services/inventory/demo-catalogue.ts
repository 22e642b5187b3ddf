import type { Queryable } from "../platform/db.js";

/** A small catalogue to try the system with; prices in USD cents. */
export const demoCatalogue = [
  { sku: "KB-001", name: "Mechanical keyboard", description: "Tenkeyless, brown switches", priceMinor: 8900, available: 500 },
  { sku: "MS-002", name: "Wireless mouse", description: "Ergonomic, 2.4 GHz", priceMinor: 2900, available: 1000 },
  { sku: "MN-003", name: "27-inch monitor", description: "1440p, 144 Hz", priceMinor: 32900, available: 200 },
  { sku: "HS-004", name: "Headset", description: "Closed-back, USB-C", priceMinor: 5900, available: 400 },
  { sku: "CB-005", name: "USB-C cable", description: "2 m, 100 W", priceMinor: 1200, available: 5000 },
  { sku: "DK-006", name: "Docking station", description: "Two displays, 96 W", priceMinor: 18900, available: 150 },
  { sku: "WC-007", name: "Webcam", description: "1080p, privacy shutter", priceMinor: 6900, available: 300 },
  { sku: "LS-008", name: "Laptop stand", description: "Aluminium, adjustable", priceMinor: 3900, available: 600 },
];

/** Inserts the demo products that are missing; leaves existing stock alone. */
export async function seedDemoCatalogue(db: Queryable): Promise<number> {
  const result = await db.query(
    `INSERT INTO products (sku, name, description, price_minor, currency, available)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
     ON CONFLICT (sku) DO NOTHING`,
    [
      demoCatalogue.map((p) => p.sku),
      demoCatalogue.map((p) => p.name),
      demoCatalogue.map((p) => p.description),
      demoCatalogue.map((p) => p.priceMinor),
      demoCatalogue.map(() => "USD"),
      demoCatalogue.map((p) => p.available),
    ],
  );
  return result.rowCount ?? 0;
}
