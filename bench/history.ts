// `--history <n>`: the bench's database starts with n concluded orders instead of none, so the
// steps run against tables and indexes the size of a system that has been taking orders.
import pg from "pg";
import { surviveDroppedConnections, transaction } from "../services/platform/db.js";

/** Orders written per transaction. */
const CHUNK = 50_000;
/** The history's orders are spread over this much time before the run, oldest first. */
const SPAN_MS = 30 * 24 * 3_600_000;

/**
 * A UUIDv7 of time `ms` (as the services' `timeOrderedId` makes them): history ids sort before
 * the run's, so new index entries still land where the last ones did.
 */
const UUID7 = `CREATE FUNCTION pg_temp.uuid7(ms bigint) RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT (lpad(to_hex(ms), 12, '0') || '7' || substr(md5(random()::text), 1, 3)
          || to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15))::uuid
$$`;

/** A chunk's orders, with the ids and items of what they leave in each service. */
const CREATE_CHUNK = `CREATE TEMP TABLE history (g int, at timestamptz, order_id uuid, payment_id uuid, notification_id uuid, customer_id text,
                              sku1 text, price1 bigint, sku2 text, price2 bigint, total bigint) ON COMMIT DROP`;
/** Fills `history` with orders g = $1 … $2 of $3, for customers $4 and products $5. */
const FILL_CHUNK = `INSERT INTO history
   SELECT g, at, pg_temp.uuid7(ms), pg_temp.uuid7(ms), pg_temp.uuid7(ms), customer_id,
          sku1, price1, sku2, price2, price1 + coalesce(2 * price2, 0)
     FROM generate_series($1::int, $2::int) AS g
          CROSS JOIN LATERAL (SELECT now() - interval '1 millisecond' * ${SPAN_MS} * (1 - g::float8 / $3::int) AS at) AS t
          CROSS JOIN LATERAL (SELECT (extract(epoch FROM at) * 1000)::bigint AS ms,
                          ($4::text[])[1 + g % cardinality($4::text[])] AS customer_id,
                          ($5::text[])[1 + g % cardinality($5::text[])] AS sku1, 100 + (g * 37) % 900 AS price1) AS one
          LEFT JOIN LATERAL (SELECT ($5::text[])[1 + (g * 7 + 3) % cardinality($5::text[])] AS sku2, 100 + (g * 53) % 900 AS price2
                    WHERE g % 3 = 0 AND (g * 7 + 3) % cardinality($5::text[]) <> g % cardinality($5::text[])) AS maybe_two ON true`;
/**
 * The chunk's orders as a confirmed saga leaves them in every service: the order with one or
 * two items and its four transitions, the committed reservation, the charge with its ledger
 * entry, the notification. Wallet balances are left as they are: the history's charges are
 * records, not money the run can spend.
 */
const WRITE_CHUNK = [
  `INSERT INTO orders.orders (order_id, customer_id, status, total_minor, currency, status_reason, version, created_at, updated_at,
                              awaiting, step_started_at, step_deadline, step_attempts, concluded_at, stock_reserved, charged)
   SELECT order_id, customer_id, 'CONFIRMED', total, 'USD', 'payment charged', 4, at, at, '{}', at, NULL, 1, at, true, true
     FROM history ORDER BY g`,
  `INSERT INTO orders.order_items (order_id, line_no, sku, quantity, unit_price_minor)
   SELECT order_id, 1, sku1, 1, price1 FROM history
   UNION ALL SELECT order_id, 2, sku2, 2, price2 FROM history WHERE sku2 IS NOT NULL`,
  `INSERT INTO orders.order_history (order_id, from_status, to_status, reason, at)
   SELECT order_id, step.from_status, step.to_status, step.reason, at
     FROM history, (VALUES (1, 'UNSPECIFIED', 'PENDING', 'order placed'), (2, 'PENDING', 'FRAUD_APPROVED', 'fraud check passed'),
                           (3, 'FRAUD_APPROVED', 'STOCK_RESERVED', 'stock reserved'), (4, 'STOCK_RESERVED', 'CONFIRMED', 'payment charged'))
                   AS step(n, from_status, to_status, reason)
    ORDER BY g, step.n`,
  `INSERT INTO inventory.reservations (order_id, status, created_at, updated_at) SELECT order_id, 'COMMITTED', at, at FROM history`,
  `INSERT INTO inventory.reservation_lines (order_id, sku, quantity)
   SELECT order_id, sku1, 1 FROM history
   UNION ALL SELECT order_id, sku2, 2 FROM history WHERE sku2 IS NOT NULL`,
  `INSERT INTO payment.payments (payment_id, order_id, customer_id, amount_minor, currency, status, created_at, updated_at)
   SELECT payment_id, order_id::text, customer_id, total, 'USD', 'CHARGED', at, at FROM history ORDER BY g`,
  `INSERT INTO payment.ledger_entries (customer_id, kind, amount_minor, currency, payment_id, order_id, created_at)
   SELECT customer_id, 'CHARGE', -total, 'USD', payment_id, order_id::text, at FROM history ORDER BY g`,
  `INSERT INTO notification.notifications (notification_id, customer_id, order_id, kind, message, created_at)
   SELECT notification_id, customer_id, order_id::text, 'order_confirmed', 'Your order ' || left(order_id::text, 8) || '… is confirmed', at
     FROM history ORDER BY g`,
];

/**
 * Writes `orders` concluded orders of `customers` (whose wallets must exist) for `skus`, spread
 * over the 30 days before now, then VACUUM ANALYZE and CHECKPOINT: the tables are as large as
 * such a history makes them, their statistics current, their pages on disk. `progress` hears
 * after each chunk.
 */
export async function seedHistory(databaseUrl: string, orders: number, customers: readonly string[], skus: readonly string[], progress: (written: number) => void = () => undefined): Promise<void> {
  if (orders <= 0) return;
  if (customers.length === 0 || skus.length === 0) throw new Error("a history needs customers and products");
  // One connection: the function and each chunk's temporary table live in its session.
  const pool = surviveDroppedConnections(new pg.Pool({ connectionString: databaseUrl, max: 1, application_name: "orderflow-bench-history" }));
  try {
    await pool.query(UUID7);
    for (let first = 1; first <= orders; first += CHUNK) {
      const last = Math.min(orders, first + CHUNK - 1);
      await transaction(pool, async (client) => {
        await client.query(CREATE_CHUNK);
        await client.query(FILL_CHUNK, [first, last, orders, customers, skus]);
        for (const sql of WRITE_CHUNK) await client.query(sql);
      });
      progress(last);
    }
    await pool.query("VACUUM (ANALYZE) orders.orders, orders.order_items, orders.order_history, inventory.reservations, inventory.reservation_lines, payment.payments, payment.ledger_entries, notification.notifications");
    // Written out now rather than by a checkpoint during the steps (a role without the right leaves it to Postgres).
    await pool.query("CHECKPOINT").catch(() => undefined);
  } finally {
    await pool.end();
  }
}
