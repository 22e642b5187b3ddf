import { performance } from "node:perf_hooks";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { PaymentService } from "../gen/orderflow/payment/v1/payment_pb.js";
import { surviveDroppedConnections } from "../services/platform/db.js";
import type { BenchOptions } from "./options.js";
import type { Endpoints } from "./system-under-test.js";

/** Products with a billion units each (SQL into inventory) and funded wallets (TopUpWallet), for the run's customers. */
export async function seed(options: BenchOptions, endpoints: Endpoints, runId: string): Promise<{ customers: string[]; skus: string[]; ms: number }> {
  const started = performance.now();
  const skus = Array.from({ length: options.products }, (_, i) => `BENCH-${i + 1}`);
  const pool = surviveDroppedConnections(new pg.Pool({ connectionString: endpoints.databaseUrl, max: 2, application_name: "orderflow-bench-seed" }));
  try {
    await pool.query(
      `INSERT INTO inventory.products (sku, name, description, price_minor, currency, available)
       SELECT 'BENCH-' || g, 'Bench product ' || g, 'seeded by npm run bench', 100 + (g * 37) % 900, 'USD', 1000000000
       FROM generate_series(1, $1::int) AS g
       ON CONFLICT (sku) DO UPDATE SET available = GREATEST(inventory.products.available, 1000000000)`,
      [options.products],
    );
  } finally {
    await pool.end();
  }
  const customers = Array.from({ length: options.customers }, (_, i) => `bench-${runId}-${i + 1}`);
  const payment = createClient(PaymentService, createGrpcTransport({ baseUrl: `http://${endpoints.address("payment")}` }));
  let index = 0;
  const worker = async (): Promise<void> => {
    while (index < customers.length) {
      const customerId = customers[index++] ?? "";
      await payment.topUpWallet(
        { customerId, amount: { amountMinor: 1_000_000_000n, currency: "USD" }, idempotencyKey: `bench-seed-${customerId}` },
        { timeoutMs: 30_000 },
      );
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return { customers, skus, ms: Math.round(performance.now() - started) };
}
