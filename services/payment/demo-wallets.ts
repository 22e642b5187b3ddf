import type { Database } from "../platform/db.js";
import { topUpWallet } from "./store.js";

/** Customers `npm start` funds so the README's examples confirm; USD 1,000.00 each, once. */
export const demoCustomers = ["alice", "bob", "carol"];

export async function seedDemoWallets(db: Database): Promise<number> {
  let applied = 0;
  for (const customerId of demoCustomers) {
    const result = await topUpWallet(db, { customerId, amountMinor: 100_000n, currency: "USD", idempotencyKey: "demo-seed" });
    if (result.applied) applied++;
  }
  return applied;
}
