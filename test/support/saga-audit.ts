/**
 * The saga audit: reads the orders, inventory, payment (and notification)
 * schemas of one system's database straight from Postgres and checks that
 * money and stock are conserved and every order reached exactly one outcome.
 * Used by the crash test and the burst test (and anywhere an audit helps).
 *
 * It returns violations as sentences instead of throwing, so a test shows all
 * of them at once: `expect(report.violations).toEqual([])`.
 */
import type pg from "pg";

/** A pool, or a client (e.g. inside a transaction). */
export type AuditDb = Pick<pg.Pool, "query">;

/** Stock as it was before the orders under audit, per SKU (see snapshotStock). */
export interface StockBaseline {
  /** available + reserved + sold per SKU at the snapshot. */
  total: Map<string, bigint>;
  /** stock_adjustments rows after this id are changes made since the snapshot. */
  lastAdjustmentId: bigint;
}

export interface AuditOptions {
  /** Stock before the orders: enables the conservation check initial + adjustments = available + reserved + sold. */
  baseline?: StockBaseline;
  /** Sum of the top-ups each customer was given by the test: the ledger must show exactly these. */
  topUps?: ReadonlyMap<string, bigint>;
  /** Orders whose figures are reported (default every order in the database). */
  orderIds?: readonly string[];
  /** Every order must be terminal (default true); false audits a system mid-flight (money and stock only). */
  requireTerminal?: boolean;
}

export interface AuditReport {
  orders: number;
  byStatus: Record<string, number>;
  /** From the first order created to the last one concluded (of the reported orders). */
  wallMs: number;
  sagasPerSecond: number;
  wallets: number;
  products: number;
  payments: { charged: number; declined: number; refunded: number };
  money: { toppedUpMinor: bigint; chargedMinor: bigint; refundedMinor: bigint; balancesMinor: bigint };
  unitsSold: bigint;
  notifications: number | undefined;
  violations: string[];
}

const terminal = new Set(["CONFIRMED", "REJECTED", "CANCELLED"]);
const notificationKind: Record<string, string> = { CONFIRMED: "order_confirmed", REJECTED: "order_rejected", CANCELLED: "order_cancelled" };

/** Stock now, to audit the orders placed after it. */
export async function snapshotStock(db: AuditDb): Promise<StockBaseline> {
  const products = await db.query<{ sku: string; total: string }>("SELECT sku, available + reserved + sold AS total FROM inventory.products");
  const adj = await db.query<{ id: string | null }>("SELECT max(id) AS id FROM inventory.stock_adjustments");
  return { total: new Map(products.rows.map((r) => [r.sku, BigInt(r.total)])), lastAdjustmentId: BigInt(adj.rows[0]?.id ?? 0) };
}

interface OrderRow {
  order_id: string;
  customer_id: string;
  status: string;
  total_minor: string;
  currency: string;
  awaiting: string[];
  created_at: Date;
  concluded_at: Date | null;
}

export async function auditSaga(db: AuditDb, options: AuditOptions = {}): Promise<AuditReport> {
  const v: string[] = [];
  const requireTerminal = options.requireTerminal ?? true;
  const cap = (list: string[], what: string, max = 10) => {
    if (list.length > 0) v.push(`${what} (${list.length}): ${list.slice(0, max).join("; ")}${list.length > max ? "; …" : ""}`);
  };

  // ---------------------------------------------------------------- orders
  const orders = (
    await db.query<OrderRow>("SELECT order_id::text, customer_id, status, total_minor, currency, awaiting, created_at, concluded_at FROM orders.orders")
  ).rows;
  const byId = new Map(orders.map((o) => [o.order_id, o]));
  if (requireTerminal) {
    cap(
      orders.filter((o) => !terminal.has(o.status) || o.awaiting.length > 0).map((o) => `${o.order_id} ${o.status} awaiting [${o.awaiting.join(",")}]`),
      "orders not terminal",
    );
  }

  // History: a chain from UNSPECIFIED to the current status; nothing leaves REJECTED or CANCELLED;
  // CONFIRMED is left only by a cancel.
  const history = (
    await db.query<{ order_id: string; from_status: string; to_status: string }>("SELECT order_id::text, from_status, to_status FROM orders.order_history ORDER BY order_id, id")
  ).rows;
  const chains = new Map<string, Array<{ from: string; to: string }>>();
  for (const h of history) {
    const chain = chains.get(h.order_id) ?? [];
    chain.push({ from: h.from_status, to: h.to_status });
    chains.set(h.order_id, chain);
  }
  const badHistory: string[] = [];
  const outcomes = new Map<string, string[]>();
  for (const o of orders) {
    const chain = chains.get(o.order_id) ?? [];
    let at = "UNSPECIFIED";
    const reached: string[] = [];
    for (const step of chain) {
      if (step.from !== at) badHistory.push(`${o.order_id}: ${step.from}->${step.to} after ${at}`);
      if (at === "REJECTED" || at === "CANCELLED") badHistory.push(`${o.order_id}: left terminal ${at} for ${step.to}`);
      if (at === "CONFIRMED" && step.to !== "CANCELLING") badHistory.push(`${o.order_id}: CONFIRMED -> ${step.to}`);
      if (terminal.has(step.to)) reached.push(step.to);
      at = step.to;
    }
    if (at !== o.status) badHistory.push(`${o.order_id}: history ends at ${at}, status is ${o.status}`);
    if (new Set(reached).size !== reached.length) badHistory.push(`${o.order_id}: reached ${reached.join(", ")}`);
    outcomes.set(o.order_id, reached);
  }
  cap(badHistory, "inconsistent order histories");

  // ---------------------------------------------------------------- payments
  const payments = (
    await db.query<{ order_id: string; customer_id: string | null; amount_minor: string; currency: string | null; status: string }>(
      "SELECT order_id, customer_id, amount_minor, currency, status FROM payment.payments",
    )
  ).rows;
  const paymentsByOrder = new Map<string, typeof payments>();
  for (const p of payments) paymentsByOrder.set(p.order_id, [...(paymentsByOrder.get(p.order_id) ?? []), p]);
  cap(
    [...paymentsByOrder].filter(([, ps]) => ps.length > 1).map(([id, ps]) => `${id} has ${ps.length} payments`),
    "orders with more than one payment",
  );
  const ledger = (
    await db.query<{ order_id: string; kind: string; n: string; amount: string }>(
      "SELECT order_id, kind, count(*) AS n, sum(amount_minor) AS amount FROM payment.ledger_entries WHERE order_id IS NOT NULL GROUP BY order_id, kind",
    )
  ).rows;
  const ledgerByOrder = new Map<string, { charges: number; refunds: number; net: bigint }>();
  for (const l of ledger) {
    const entry = ledgerByOrder.get(l.order_id) ?? { charges: 0, refunds: 0, net: 0n };
    if (l.kind === "CHARGE") entry.charges += Number(l.n);
    if (l.kind === "REFUND") entry.refunds += Number(l.n);
    entry.net += BigInt(l.amount);
    ledgerByOrder.set(l.order_id, entry);
  }
  cap(
    [...ledgerByOrder].filter(([, e]) => e.charges > 1 || e.refunds > 1 || e.refunds > e.charges).map(([id, e]) => `${id}: ${e.charges} charges, ${e.refunds} refunds`),
    "orders charged or refunded more than once",
  );
  cap(
    [...new Set([...paymentsByOrder.keys(), ...ledgerByOrder.keys()])].filter((id) => !byId.has(id)),
    "payments or ledger rows for unknown orders",
  );

  // CONFIRMED <=> CHARGED payment of the order's total; anything else holds no money.
  const moneyMismatch: string[] = [];
  for (const o of orders) {
    const p = paymentsByOrder.get(o.order_id)?.[0];
    const net = ledgerByOrder.get(o.order_id)?.net ?? 0n;
    const total = BigInt(o.total_minor);
    if (o.status === "CONFIRMED") {
      if (!p || p.status !== "CHARGED") moneyMismatch.push(`${o.order_id} CONFIRMED with payment ${p?.status ?? "none"}`);
      else if (BigInt(p.amount_minor) !== total || p.customer_id !== o.customer_id || p.currency !== o.currency)
        moneyMismatch.push(`${o.order_id} CONFIRMED for ${total} ${o.customer_id}, charged ${p.amount_minor} ${p.currency} ${p.customer_id}`);
      if (net !== -total) moneyMismatch.push(`${o.order_id} CONFIRMED for ${total}, ledger net ${net}`);
    } else if (terminal.has(o.status)) {
      if (p?.status === "CHARGED") moneyMismatch.push(`${o.order_id} ${o.status} but its payment is CHARGED`);
      if (net !== 0n) moneyMismatch.push(`${o.order_id} ${o.status} but ledger net ${net}`);
    } else if (p?.status === "CHARGED" && net !== -BigInt(p.amount_minor)) {
      moneyMismatch.push(`${o.order_id} ${o.status}: payment CHARGED ${p.amount_minor}, ledger net ${net}`);
    }
  }
  for (const p of payments) {
    const net = ledgerByOrder.get(p.order_id)?.net ?? 0n;
    const expected = p.status === "CHARGED" ? -BigInt(p.amount_minor) : 0n;
    if (net !== expected) moneyMismatch.push(`payment of ${p.order_id} is ${p.status} ${p.amount_minor}, ledger net ${net}`);
  }
  cap(moneyMismatch, "orders whose money does not match their outcome");

  // Wallets: initial (0) + top-ups - charges + refunds = balance, never negative.
  const wallets = (
    await db.query<{ customer_id: string; balance_minor: string; topups: string; charges: string; refunds: string }>(
      `SELECT w.customer_id, w.balance_minor,
              coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'TOPUP'), 0) AS topups,
              coalesce(-sum(l.amount_minor) FILTER (WHERE l.kind = 'CHARGE'), 0) AS charges,
              coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'REFUND'), 0) AS refunds
         FROM payment.wallets w LEFT JOIN payment.ledger_entries l USING (customer_id)
        GROUP BY w.customer_id, w.balance_minor`,
    )
  ).rows;
  const walletBad: string[] = [];
  let toppedUp = 0n;
  let charged = 0n;
  let refunded = 0n;
  let balances = 0n;
  for (const w of wallets) {
    const [balance, t, c, r] = [BigInt(w.balance_minor), BigInt(w.topups), BigInt(w.charges), BigInt(w.refunds)];
    toppedUp += t;
    charged += c;
    refunded += r;
    balances += balance;
    if (t - c + r !== balance) walletBad.push(`${w.customer_id}: ${t} - ${c} + ${r} != ${balance}`);
    if (balance < 0n) walletBad.push(`${w.customer_id}: negative balance ${balance}`);
    const expected = options.topUps?.get(w.customer_id);
    if (options.topUps && expected !== t) walletBad.push(`${w.customer_id}: topped up ${t}, the test gave ${expected ?? 0}`);
  }
  if (options.topUps) {
    const known = new Set(wallets.map((w) => w.customer_id));
    for (const [customer, amount] of options.topUps) if (amount > 0n && !known.has(customer)) walletBad.push(`${customer}: no wallet after a top-up of ${amount}`);
  }
  cap(walletBad, "wallets that do not balance");

  // ---------------------------------------------------------------- stock
  const products = (await db.query<{ sku: string; available: string; reserved: string; sold: string }>("SELECT sku, available, reserved, sold FROM inventory.products")).rows;
  const adjustments = new Map(
    (
      await db.query<{ sku: string; delta: string }>("SELECT sku, sum(delta) AS delta FROM inventory.stock_adjustments WHERE id > $1 GROUP BY sku", [
        (options.baseline?.lastAdjustmentId ?? 0n).toString(),
      ])
    ).rows.map((r) => [r.sku, BigInt(r.delta)]),
  );
  const lines = (
    await db.query<{ sku: string; status: string; qty: string }>(
      "SELECT l.sku, r.status, sum(l.quantity) AS qty FROM inventory.reservation_lines l JOIN inventory.reservations r USING (order_id) GROUP BY l.sku, r.status",
    )
  ).rows;
  const linesOf = (sku: string, status: string) => BigInt(lines.find((l) => l.sku === sku && l.status === status)?.qty ?? 0);
  const confirmedItems = new Map(
    (
      await db.query<{ sku: string; qty: string }>(
        "SELECT i.sku, sum(i.quantity) AS qty FROM orders.order_items i JOIN orders.orders o USING (order_id) WHERE o.status = 'CONFIRMED' GROUP BY i.sku",
      )
    ).rows.map((r) => [r.sku, BigInt(r.qty)]),
  );
  const stockBad: string[] = [];
  let unitsSold = 0n;
  for (const p of products) {
    const [available, reserved, sold] = [BigInt(p.available), BigInt(p.reserved), BigInt(p.sold)];
    unitsSold += sold;
    const initial = options.baseline?.total.get(p.sku);
    if (initial !== undefined) {
      const expected = initial + (adjustments.get(p.sku) ?? 0n);
      if (available + reserved + sold !== expected) stockBad.push(`${p.sku}: initial ${initial} + adjustments ${adjustments.get(p.sku) ?? 0n} != available ${available} + reserved ${reserved} + sold ${sold}`);
    }
    if (available < 0n || reserved < 0n || sold < 0n) stockBad.push(`${p.sku}: negative stock ${available}/${reserved}/${sold}`);
    if (reserved !== linesOf(p.sku, "RESERVED")) stockBad.push(`${p.sku}: reserved ${reserved}, reservations hold ${linesOf(p.sku, "RESERVED")}`);
    if (sold !== linesOf(p.sku, "COMMITTED")) stockBad.push(`${p.sku}: sold ${sold}, committed reservations ${linesOf(p.sku, "COMMITTED")}`);
    if (requireTerminal && reserved !== 0n) stockBad.push(`${p.sku}: ${reserved} still reserved with every order terminal`);
    if (requireTerminal && sold !== (confirmedItems.get(p.sku) ?? 0n)) stockBad.push(`${p.sku}: sold ${sold}, CONFIRMED orders hold ${confirmedItems.get(p.sku) ?? 0n}`);
  }
  cap(stockBad, "products whose stock does not add up");

  const reservations = (await db.query<{ order_id: string; status: string }>("SELECT order_id::text, status FROM inventory.reservations")).rows;
  const reservationOf = new Map(reservations.map((r) => [r.order_id, r.status]));
  const reservationBad: string[] = [];
  for (const o of orders) {
    const r = reservationOf.get(o.order_id);
    if (o.status === "CONFIRMED" && requireTerminal && r !== "COMMITTED") reservationBad.push(`${o.order_id} CONFIRMED, reservation ${r ?? "none"}`);
    if ((o.status === "REJECTED" || o.status === "CANCELLED") && (r === "RESERVED" || r === "COMMITTED")) reservationBad.push(`${o.order_id} ${o.status}, reservation ${r}`);
  }
  cap(reservations.filter((r) => !byId.has(r.order_id)).map((r) => r.order_id), "reservations for unknown orders");
  cap(reservationBad, "reservations that do not match their order");

  // ---------------------------------------------------------------- notifications
  let notificationCount: number | undefined;
  const hasNotifications = (await db.query("SELECT 1 FROM information_schema.tables WHERE table_schema = 'notification' AND table_name = 'notifications'")).rowCount === 1;
  if (hasNotifications && requireTerminal) {
    const rows = (await db.query<{ order_id: string; kind: string }>("SELECT order_id, kind FROM notification.notifications")).rows;
    notificationCount = rows.length;
    const kinds = new Map<string, string[]>();
    for (const r of rows) kinds.set(r.order_id, [...(kinds.get(r.order_id) ?? []), r.kind]);
    const bad: string[] = [];
    for (const o of orders) {
      const want = (outcomes.get(o.order_id) ?? []).map((s) => notificationKind[s] ?? s).sort();
      const got = (kinds.get(o.order_id) ?? []).sort();
      if (want.join(",") !== got.join(",")) bad.push(`${o.order_id}: outcomes [${want.join(",")}], notifications [${got.join(",")}]`);
    }
    cap(bad, "orders whose notifications do not match their outcomes");
  }

  // ---------------------------------------------------------------- figures
  const reported = options.orderIds ? options.orderIds.map((id) => byId.get(id)).filter((o): o is OrderRow => o !== undefined) : orders;
  if (options.orderIds && reported.length !== options.orderIds.length) v.push(`${options.orderIds.length - reported.length} reported orders are not in the database`);
  const byStatus: Record<string, number> = {};
  for (const o of reported) byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
  const first = Math.min(...reported.map((o) => o.created_at.getTime()));
  const last = Math.max(...reported.map((o) => (o.concluded_at ?? o.created_at).getTime()));
  const wallMs = reported.length > 0 ? last - first : 0;
  return {
    orders: reported.length,
    byStatus,
    wallMs,
    sagasPerSecond: wallMs > 0 ? reported.length / (wallMs / 1000) : 0,
    wallets: wallets.length,
    products: products.length,
    payments: {
      charged: payments.filter((p) => p.status === "CHARGED").length,
      declined: payments.filter((p) => p.status === "DECLINED").length,
      refunded: payments.filter((p) => p.status === "REFUNDED").length,
    },
    money: { toppedUpMinor: toppedUp, chargedMinor: charged, refundedMinor: refunded, balancesMinor: balances },
    unitsSold,
    notifications: notificationCount,
    violations: v,
  };
}

/** The figures as a few lines for the test output. */
export function formatAudit(title: string, r: AuditReport): string {
  const statuses = Object.entries(r.byStatus)
    .sort()
    .map(([s, n]) => `${s} ${n}`)
    .join(", ");
  const usd = (minor: bigint) => `$${(Number(minor) / 100).toFixed(2)}`;
  return [
    `── ${title} ──`,
    `orders ${r.orders}: ${statuses}`,
    `wall time first create → last terminal: ${(r.wallMs / 1000).toFixed(2)} s, ${r.sagasPerSecond.toFixed(1)} sagas/s`,
    `payments: ${r.payments.charged} charged, ${r.payments.declined} declined, ${r.payments.refunded} refunded; wallets ${r.wallets}: topped up ${usd(r.money.toppedUpMinor)}, charged ${usd(r.money.chargedMinor)}, refunded ${usd(r.money.refundedMinor)}, balances ${usd(r.money.balancesMinor)}`,
    `products ${r.products}, units sold ${r.unitsSold}${r.notifications === undefined ? "" : `, notifications ${r.notifications}`}`,
    `audit: ${r.violations.length === 0 ? "OK (every order terminal, no double charge, wallets and stock conserved)" : `${r.violations.length} violation(s)`}`,
  ].join("\n");
}

/**
 * Audits until it comes out clean or the time is up, returning the last report.
 * For audits right after the orders settle: notifications (and, after a crash,
 * late replies) are still on their way for a moment.
 */
export async function auditUntilClean(db: AuditDb, options: AuditOptions, timeoutMs: number): Promise<AuditReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await auditSaga(db, options);
    if (report.violations.length === 0 || Date.now() > deadline) return report;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
