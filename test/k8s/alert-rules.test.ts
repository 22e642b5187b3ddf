/**
 * The chart's alerts, run by Prometheus's own rule engine: promtool checks the rendered rules
 * (expressions, templates) and unit-tests each alert against made-up series — when it fires,
 * with which labels, and when it must stay silent (below its threshold, before its `for`, a
 * bound that is off, another release's or namespace's targets).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prometheusBinaries } from "../support/prometheus-binaries.js";
import { renderedRuleGroups, withoutAnnotations, type RuleGroups } from "./lib/alert-rules.js";
import { at, type JsonObject, objArr, str } from "./lib/json.js";
import { ensureRenderer, helmOnPath } from "./lib/renderer.js";

const NAMESPACE = "shop";
const RELEASE = "shop-a";
let dir: string;
let promtool: string;
let rules: RuleGroups;
/** The rendered alerting rules themselves (the chart has one group). */
let alerts: JsonObject[];

beforeAll(() => {
  if (!helmOnPath()) ensureRenderer();
  promtool = prometheusBinaries().promtool;
  dir = mkdtempSync(join(tmpdir(), "orderflow-alert-rules-"));
  rules = renderedRuleGroups({ namespace: NAMESPACE, releaseName: RELEASE });
  alerts = objArr(rules.groups[0]?.["rules"], "rules");
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Labels of a target of this release's order service (as the ServiceMonitor scrapes it), or of another. */
const own = (service = "order", instance = "10.0.0.1:9090") => `namespace="${NAMESPACE}", job="${RELEASE}-orderflow-${service}", instance="${instance}"`;
const otherRelease = `namespace="${NAMESPACE}", job="shop-b-orderflow-order", instance="10.0.0.9:9090"`;
const otherNamespace = `namespace="elsewhere", job="${RELEASE}-orderflow-order", instance="10.0.1.1:9090"`;

interface Series {
  series: string;
  values: string;
}
interface AlertCase {
  eval_time: string;
  alertname: string;
  exp_alerts: Array<{ exp_labels: Record<string, string>; exp_annotations?: Record<string, string> }>;
}
interface RuleTest {
  interval: string;
  input_series: Series[];
  alert_rule_test: AlertCase[];
}

/** Runs `tests` with promtool against `groups` written as a rule file; its output when it fails. */
function promtoolTest(name: string, groups: RuleGroups, tests: RuleTest[]): { ok: boolean; output: string } {
  const rulesFile = join(dir, `${name}-rules.json`);
  const testFile = join(dir, `${name}-test.json`);
  writeFileSync(rulesFile, JSON.stringify(groups));
  writeFileSync(testFile, JSON.stringify({ rule_files: [rulesFile], evaluation_interval: "1m", tests }));
  const r = spawnSync(promtool, ["test", "rules", testFile], { encoding: "utf8" });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

const none = (eval_time: string, alertname: string): AlertCase => ({ eval_time, alertname, exp_alerts: [] });

describe("the chart's alerts under Prometheus's rule engine", () => {
  it("passes promtool's check: seven rules whose expressions and templates Prometheus accepts", () => {
    const file = join(dir, "check.json");
    writeFileSync(file, JSON.stringify(rules));
    const r = spawnSync(promtool, ["check", "rules", file], { encoding: "utf8" });
    expect(`${r.stdout}${r.stderr}`).toContain("SUCCESS: 7 rules found");
    expect(r.status).toBe(0);
  });

  it("has a unit test harness that fails an alert which does not fire as expected", () => {
    const wrong = promtoolTest("harness", withoutAnnotations(rules), [
      { interval: "1m", input_series: [{ series: `orderflow_outbox_backlog{${own()}, schema="orders"}`, values: "10x20" }], alert_rule_test: [{ eval_time: "10m", alertname: "OrderFlowOutboxBacklog", exp_alerts: [{ exp_labels: { namespace: NAMESPACE, schema: "orders", severity: "critical" } }] }] },
    ]);
    expect(wrong.ok, wrong.output).toBe(false);
  });

  it("fires each alert on the release's own targets past its threshold and its `for`, with the labels it names", () => {
    const r = promtoolTest("fire", withoutAnnotations(rules), [
      {
        // CreateOrders refused at the bound: an increase over 5 minutes, held for 5.
        interval: "1m",
        input_series: [{ series: `orderflow_order_admission_refused_total{${own()}}`, values: "0 0 0 0 0 5+5x20" }],
        alert_rule_test: [none("4m", "OrderFlowAdmissionRefused"), none("8m", "OrderFlowAdmissionRefused"), { eval_time: "12m", alertname: "OrderFlowAdmissionRefused", exp_alerts: [{ exp_labels: { namespace: NAMESPACE, severity: "warning" } }] }],
      },
      {
        // Orders in progress above 0.75 of the bound two replicas report alike: one alert, by the largest count.
        interval: "1m",
        input_series: [
          { series: `orderflow_saga_orders_in_progress{${own("order", "10.0.0.1:9090")}}`, values: "1600x20" },
          { series: `orderflow_saga_orders_in_progress{${own("order", "10.0.0.2:9090")}}`, values: "1590x20" },
          { series: `orderflow_saga_orders_in_progress_limit{${own("order", "10.0.0.1:9090")}}`, values: "2000x20" },
          { series: `orderflow_saga_orders_in_progress_limit{${own("order", "10.0.0.2:9090")}}`, values: "2000x20" },
        ],
        alert_rule_test: [none("4m", "OrderFlowOrdersInProgressHigh"), { eval_time: "10m", alertname: "OrderFlowOrdersInProgressHigh", exp_alerts: [{ exp_labels: { namespace: NAMESPACE, severity: "warning" } }] }],
      },
      {
        // Step timeouts: a step's series appears at its first timeout (absent 15 minutes before: counted by its
        // value), another's grows; fifteen minutes after its last timeout a step is quiet again. (A series
        // younger than 15 minutes is counted by its value too: here the first 15 minutes of the test.)
        interval: "1m",
        input_series: [
          { series: `orderflow_saga_step_timeouts_total{${own()}, step="reserve"}`, values: "_x30 1x30" },
          { series: `orderflow_saga_step_timeouts_total{${own()}, step="charge"}`, values: "2x30 3x30" },
        ],
        alert_rule_test: [
          none("25m", "OrderFlowSagaStepTimeouts"),
          {
            eval_time: "31m",
            alertname: "OrderFlowSagaStepTimeouts",
            exp_alerts: [
              { exp_labels: { namespace: NAMESPACE, step: "charge", severity: "warning" } },
              { exp_labels: { namespace: NAMESPACE, step: "reserve", severity: "warning" } },
            ],
          },
          none("50m", "OrderFlowSagaStepTimeouts"),
        ],
      },
      {
        interval: "1m",
        input_series: [{ series: `orderflow_bus_dead_letters_total{${own("inventory")}, consumer="inventory-commands", reason="undecodable"}`, values: "_x5 1x10" }],
        alert_rule_test: [
          none("4m", "OrderFlowDeadLetters"),
          { eval_time: "6m", alertname: "OrderFlowDeadLetters", exp_alerts: [{ exp_labels: { namespace: NAMESPACE, consumer: "inventory-commands", reason: "undecodable", severity: "warning" } }] },
        ],
      },
      {
        // An outbox backlog every order replica reports alike: one alert, critical.
        interval: "1m",
        input_series: [
          { series: `orderflow_outbox_backlog{${own("order", "10.0.0.1:9090")}, schema="orders"}`, values: "1500x20" },
          { series: `orderflow_outbox_backlog{${own("order", "10.0.0.2:9090")}, schema="orders"}`, values: "1500x20" },
        ],
        alert_rule_test: [none("4m", "OrderFlowOutboxBacklog"), { eval_time: "10m", alertname: "OrderFlowOutboxBacklog", exp_alerts: [{ exp_labels: { namespace: NAMESPACE, schema: "orders", severity: "critical" } }] }],
      },
      {
        interval: "1m",
        input_series: [{ series: `orderflow_bus_consumer_pending{${own()}, stream="INVENTORY_COMMANDS", consumer="inventory-commands"}`, values: "20000x30" }],
        alert_rule_test: [
          none("8m", "OrderFlowConsumerBehind"),
          { eval_time: "12m", alertname: "OrderFlowConsumerBehind", exp_alerts: [{ exp_labels: { namespace: NAMESPACE, stream: "INVENTORY_COMMANDS", consumer: "inventory-commands", severity: "warning" } }] },
        ],
      },
      {
        // A stream past 0.8 of its bound fires; one without a bound (-1) never does.
        interval: "1m",
        input_series: [
          { series: `orderflow_bus_stream_bytes{${own()}, stream="ORDER"}`, values: "900000000x20" },
          { series: `orderflow_bus_stream_bytes_limit{${own()}, stream="ORDER"}`, values: "1000000000x20" },
          { series: `orderflow_bus_stream_bytes{${own()}, stream="PAYMENT"}`, values: "900000000x20" },
          { series: `orderflow_bus_stream_bytes_limit{${own()}, stream="PAYMENT"}`, values: "-1x20" },
        ],
        alert_rule_test: [none("4m", "OrderFlowStreamNearlyFull"), { eval_time: "10m", alertname: "OrderFlowStreamNearlyFull", exp_alerts: [{ exp_labels: { namespace: NAMESPACE, stream: "ORDER", severity: "warning" } }] }],
      },
    ]);
    expect(r.ok, r.output).toBe(true);
  });

  it("stays silent below each threshold, with a bound that is off, and on another release's or namespace's targets", () => {
    const everyAlert = alerts.map((rule) => str(rule["alert"], "alert"));
    expect(everyAlert).toHaveLength(7);
    const series = (labels: string): Series[] => [
      { series: `orderflow_order_admission_refused_total{${labels}}`, values: "0+5x40" },
      { series: `orderflow_saga_orders_in_progress{${labels}}`, values: "1900x40" },
      { series: `orderflow_saga_orders_in_progress_limit{${labels}}`, values: "2000x40" },
      { series: `orderflow_saga_step_timeouts_total{${labels}, step="fraud"}`, values: "_x10 1+1x30" },
      { series: `orderflow_bus_dead_letters_total{${labels}, consumer="payment-commands", reason="handler_failed"}`, values: "_x10 1+1x30" },
      { series: `orderflow_outbox_backlog{${labels}, schema="orders"}`, values: "5000x40" },
      { series: `orderflow_bus_consumer_pending{${labels}, stream="ORDER", consumer="notification-order-events"}`, values: "50000x40" },
      { series: `orderflow_bus_stream_bytes{${labels}, stream="ORDER"}`, values: "999000000x40" },
      { series: `orderflow_bus_stream_bytes_limit{${labels}, stream="ORDER"}`, values: "1000000000x40" },
    ];
    const quiet = (input_series: Series[]): RuleTest => ({ interval: "1m", input_series, alert_rule_test: everyAlert.flatMap((alert) => [none("20m", alert), none("35m", alert)]) });
    const r = promtoolTest("silent", withoutAnnotations(rules), [
      // Every metric past its threshold, but on targets that are not this release's.
      quiet([...series(otherRelease), ...series(otherNamespace)]),
      // This release's targets just below each threshold (the counters flat), and the bounds off.
      quiet([
        { series: `orderflow_order_admission_refused_total{${own()}}`, values: "7x40" },
        { series: `orderflow_saga_orders_in_progress{${own()}}`, values: "1500x40" },
        { series: `orderflow_saga_orders_in_progress_limit{${own()}}`, values: "2000x40" },
        { series: `orderflow_saga_step_timeouts_total{${own()}, step="fraud"}`, values: "4x40" },
        { series: `orderflow_outbox_backlog{${own()}, schema="orders"}`, values: "1000x40" },
        { series: `orderflow_bus_consumer_pending{${own()}, stream="ORDER", consumer="notification-order-events"}`, values: "10000x40" },
        { series: `orderflow_bus_stream_bytes{${own()}, stream="ORDER"}`, values: "800000000x40" },
        { series: `orderflow_bus_stream_bytes_limit{${own()}, stream="ORDER"}`, values: "1000000000x40" },
      ]),
      // No bound of orders in progress (SAGA_MAX_ORDERS_IN_PROGRESS=0): however many there are.
      quiet([
        { series: `orderflow_saga_orders_in_progress{${own()}}`, values: "50000x40" },
        { series: `orderflow_saga_orders_in_progress_limit{${own()}}`, values: "0x40" },
      ]),
    ]);
    expect(r.ok, r.output).toBe(true);
  });

  it("expands each alert's summary and description with Prometheus's templates (value and labels)", () => {
    const outbox = alerts.find((rule) => rule["alert"] === "OrderFlowOutboxBacklog");
    const expand = (text: string) => text.replaceAll("{{ $value | humanize }}", "1.5k").replaceAll("{{ $labels.schema }}", "orders").replaceAll("{{ $labels.namespace }}", NAMESPACE);
    const summary = expand(str(at(outbox, "annotations", "summary"), "summary"));
    const description = expand(str(at(outbox, "annotations", "description"), "description"));
    expect(`${summary} ${description}`).not.toContain("{{");
    expect(description).toContain("1.5k outbox rows of schema orders in shop are unpublished (more than 1000 for 5 minutes)");
    const r = promtoolTest("annotations", rules, [
      {
        interval: "1m",
        input_series: [{ series: `orderflow_outbox_backlog{${own()}, schema="orders"}`, values: "1500x20" }],
        alert_rule_test: [{ eval_time: "10m", alertname: "OrderFlowOutboxBacklog", exp_alerts: [{ exp_labels: { namespace: NAMESPACE, schema: "orders", severity: "critical" }, exp_annotations: { summary, description } }] }],
      },
    ]);
    expect(r.ok, r.output).toBe(true);
  });
});
