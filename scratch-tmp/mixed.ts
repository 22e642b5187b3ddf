import { Database } from "../services/platform/db.js";
import { createLogger } from "../services/platform/logger.js";
import { migrate } from "../services/platform/migrate.js";
import { OrderStore } from "../services/order/store.js";
import { OrderStatus } from "../gen/orderflow/order/v1/order_pb.js";

const url = "postgres://postgres@127.0.0.1:5432/scratch";
const schema = "orders";
await migrate({ databaseUrl: url, service: "order", schema, logger: createLogger("scratch", "warn"), busTables: true });
const db = new Database({ url, poolMax: 2, backgroundPoolMax: 1, schema, applicationName: "scratch" });
const q = (sql: string) => db.primary.query(sql);
const { rows } = await db.primary.query("SELECT count(*)::int AS n FROM orders");
if (rows[0].n === 0) {
  await q(`INSERT INTO orders (order_id, customer_id, status, total_minor, currency) SELECT gen_random_uuid(), 'c' || (n % 10)::text, 'CONFIRMED', 100, 'USD' FROM generate_series(1, 450000) n`);
  await q(`INSERT INTO orders (order_id, customer_id, status, total_minor, currency, awaiting, step_deadline) SELECT gen_random_uuid(), 'big', 'PENDING', 100, 'USD', '{fraud}', now() + interval '1 hour' FROM generate_series(1, 3)`);
  await q(`INSERT INTO orders (order_id, customer_id, status, total_minor, currency) SELECT gen_random_uuid(), 'big', 'REJECTED', 100, 'USD' FROM generate_series(1, 3)`);
  await q(`INSERT INTO orders (order_id, customer_id, status, total_minor, currency) SELECT gen_random_uuid(), 'big', 'CONFIRMED', 100, 'USD' FROM generate_series(1, 50000)`);
  await q("VACUUM ANALYZE orders");
}
const store = new OrderStore(db);
const asked = [OrderStatus.PENDING, OrderStatus.REJECTED];
for (let round = 0; round < 3; round++) {
  const n = 200;
  const t = performance.now();
  let got = 0;
  for (let i = 0; i < n; i++) got = (await store.list("big", asked, 20, undefined)).length;
  console.log(`round ${round}: ${((performance.now() - t) / n).toFixed(2)} ms per call, ${got} orders`);
}
await db.close();
