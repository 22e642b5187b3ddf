/**
 * Every way one order's saga can go, explored exhaustively: each layout of first steps (the
 * default and the rolling upgrade's), each outcome of the fraud check, the stock and the funds,
 * the commands and answers delivered in every order, a deadline give-up and a cancel at any
 * moment. The real state machine (`decide`, `planAdvance`, `giveUp`, `cancellation`) against
 * participants that keep the contract (docs/saga-contract.md): effects keyed by order, and
 * tombstones that refuse a step its compensation overtook. Once nothing is left to deliver,
 * the order must have ended, holding what its end says and nothing else.
 */
import { describe, expect, it } from "vitest";
import { OrderStatus } from "../../../gen/orderflow/order/v1/order_pb.js";
import { cancellation } from "./cancel.js";
import type { Step } from "./commands.js";
import { giveUp } from "./deadlines.js";
import { decide, type Reply } from "./orchestrator.js";
import { type Change, planAdvance, type SagaOrder } from "./state.js";
import { sagaOrder } from "../../../test/support/saga-order.js";

interface Outcomes {
  approve: boolean;
  stock: boolean;
  funds: boolean;
}

type Stock = "none" | "reserved" | "failed" | "released" | "tombstone";
type Money = "none" | "charged" | "declined" | "refunded" | "tombstone";
type InFlight = { command: Step } | { reply: Reply };

interface World {
  order: SagaOrder;
  bag: readonly InFlight[];
  stock: Stock;
  money: Money;
  cancelled: boolean;
  gaveUp: boolean;
  /** Each status change as from>to, in order. */
  history: readonly string[];
}

const stepOfSubject: Record<string, Step | undefined> = {
  "fraud.cmd.assess": "fraud",
  "inventory.cmd.reserve": "reserve",
  "inventory.cmd.release": "release",
  "payment.cmd.charge": "charge",
  "payment.cmd.refund": "refund",
};

/** A participant handling a command, as the contract has it. */
function handle(world: World, step: Step, outcomes: Outcomes): { world: World; reply: Reply } {
  const { stock, money } = world;
  switch (step) {
    case "fraud":
      return { world, reply: { kind: "fraud", approved: outcomes.approve, reason: outcomes.approve ? "" : "blocked" } };
    case "reserve": {
      const next: Stock = stock === "none" ? (outcomes.stock ? "reserved" : "failed") : stock;
      return { world: { ...world, stock: next }, reply: next === "reserved" ? { kind: "reserved" } : { kind: "reservationFailed", reason: next === "failed" ? "out of stock" : "order cancelled" } };
    }
    case "release":
      return { world: { ...world, stock: stock === "none" ? "tombstone" : stock === "reserved" ? "released" : stock }, reply: { kind: "released" } };
    case "charge": {
      const next: Money = money === "none" ? (outcomes.funds ? "charged" : "declined") : money;
      return { world: { ...world, money: next }, reply: next === "charged" || next === "refunded" ? { kind: "charged" } : { kind: "declined", reason: next === "declined" ? "insufficient funds" : "order cancelled" } };
    }
    case "refund":
      return { world: { ...world, money: money === "none" ? "tombstone" : money === "charged" ? "refunded" : money }, reply: { kind: "refunded" } };
  }
}

/** The order service applying a change: the order as it now stands, its commands in flight, its history. */
function apply(world: World, change: Change, bag: readonly InFlight[]): World {
  const advance = planAdvance(world.order, change);
  const commands = advance.messages.flatMap((m) => {
    const step = stepOfSubject[m.subject];
    return step ? [{ command: step }] : [];
  });
  const changes = advance.transitions.filter((t) => t.statusChanged).map((t) => `${t.fromStatus}>${t.status}`);
  return { ...world, order: advance.order, bag: [...bag, ...commands], history: [...world.history, ...changes] };
}

/** Every world one event away: a message delivered, the deadline given up on, a cancel. */
function successors(world: World, outcomes: Outcomes): World[] {
  const next: World[] = [];
  world.bag.forEach((item, index) => {
    const rest = [...world.bag.slice(0, index), ...world.bag.slice(index + 1)];
    if ("command" in item) {
      const handled = handle(world, item.command, outcomes);
      next.push({ ...handled.world, bag: [...rest, { reply: handled.reply }] });
    } else {
      const change = decide(world.order, item.reply);
      next.push(change ? apply(world, change, rest) : { ...world, bag: rest });
    }
  });
  if (!world.gaveUp) {
    const change = giveUp(world.order);
    if (change) next.push(apply({ ...world, gaveUp: true }, change, world.bag));
  }
  if (!world.cancelled) {
    let change: Change | "unchanged" | undefined;
    try {
      change = cancellation(world.order, "changed my mind");
    } catch {
      change = undefined; // refused (FAILED_PRECONDITION): nothing changes
    }
    if (change && change !== "unchanged") next.push(apply({ ...world, cancelled: true }, change, world.bag));
  }
  return next;
}

/** What is wrong with a world that has nothing left to deliver. */
function violations(world: World, outcomes: Outcomes): string[] {
  const { order, stock, money } = world;
  const found: string[] = [];
  const status = OrderStatus[order.status];
  if (order.awaiting.length > 0) found.push(`${status} still awaits ${order.awaiting.join(",")}`);
  if (status === "CONFIRMED") {
    if (!outcomes.approve || stock !== "reserved" || money !== "charged") found.push(`CONFIRMED with fraud ${outcomes.approve}, stock ${stock}, money ${money}`);
  } else if (status === "REJECTED" || status === "CANCELLED") {
    if (stock === "reserved" || money === "charged") found.push(`${status} keeps stock ${stock}, money ${money}`);
    if (status === "REJECTED" && outcomes.approve && outcomes.stock && outcomes.funds && !world.gaveUp) found.push("REJECTED though every step passed");
  } else {
    found.push(`ended ${status}`);
  }
  const chain = ["UNSPECIFIED>PENDING", ...world.history];
  for (let i = 1; i < chain.length; i++) if (chain[i]!.split(">")[0] !== chain[i - 1]!.split(">")[1]) found.push(`history breaks at ${chain[i]}`);
  if (order.version !== BigInt(chain.length)) found.push(`version ${order.version} after ${chain.length} status changes`);
  return found;
}

function placed(awaiting: Step[]): World {
  const order = sagaOrder({ awaiting, reason: "order placed", lines: [{ sku: "A", quantity: 1n }] });
  return { order, bag: awaiting.map((command) => ({ command })), stock: "none", money: "none", cancelled: false, gaveUp: false, history: [] };
}

function keyOf(world: World): string {
  const o = world.order;
  const bag = world.bag.map((m) => ("command" in m ? `c:${m.command}` : `r:${JSON.stringify(m.reply)}`)).sort();
  return JSON.stringify([o.status, o.version.toString(), o.awaiting, o.compensateTo, o.stockReserved, o.charged, bag, world.stock, world.money, world.cancelled, world.gaveUp, world.history]);
}

/** Explores every world reachable from the placed order; returns how many, and the ends that break a rule. */
function explore(first: Step[], outcomes: Outcomes): { worlds: number; endings: Set<string>; broken: string[] } {
  const seen = new Set<string>();
  const endings = new Set<string>();
  const broken: string[] = [];
  const stack = [placed(first)];
  while (stack.length > 0) {
    const world = stack.pop()!;
    const key = keyOf(world);
    if (seen.has(key)) continue;
    seen.add(key);
    if (world.bag.length === 0) {
      endings.add(OrderStatus[world.order.status]);
      for (const v of violations(world, outcomes)) if (broken.length < 5) broken.push(`${v} (history ${world.history.join(" ")})`);
    }
    stack.push(...successors(world, outcomes));
  }
  return { worlds: seen.size, endings, broken };
}

const layouts: Record<string, Step[]> = {
  "all three side by side": ["fraud", "reserve", "charge"],
  "charge after the checks": ["fraud", "reserve"],
  "reservation after the fraud check": ["fraud", "charge"],
  "one step at a time": ["fraud"],
};

const outcomes: Outcomes[] = [true, false].flatMap((approve) => [true, false].flatMap((stock) => [true, false].map((funds) => ({ approve, stock, funds }))));

describe("the saga, every interleaving of one order", () => {
  for (const [layout, first] of Object.entries(layouts)) {
    it.each(outcomes.map((o) => [`fraud ${o.approve ? "approves" : "declines"}, stock ${o.stock ? "there" : "short"}, funds ${o.funds ? "there" : "short"}`, o] as const))(
      `${layout}: %s — every ending terminal, holding only what it should`,
      (_, o) => {
        const { worlds, endings, broken } = explore(first, o);
        expect(broken).toEqual([]);
        expect(worlds).toBeGreaterThan(1);
        // Without a cancel or a give-up, the outcome decides the ending.
        expect(endings.has(o.approve && o.stock && o.funds ? "CONFIRMED" : "REJECTED")).toBe(true);
      },
    );
  }
});
