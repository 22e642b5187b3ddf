/**
 * What operators see of the system, from the running services.
 *
 * Metrics: every metric the chart's Grafana dashboard and alerts read is one the services
 * export on /metrics; and a Prometheus scraping the five services, labelled as the chart's
 * ServiceMonitors label them, answers every query of the dashboard (its variables too) and
 * evaluates the chart's rendered alerts without an error, none of them firing.
 *
 * Traces — one order, one trace: with an OTLP endpoint configured, every service exports its spans,
 * and an order's saga forms one connected trace across the five processes — from the
 * caller's CreateOrder through the participants' commands, the order service's replies and
 * the conclusion the notification service hears of. The endpoint is a receiver in this test,
 * as an OpenTelemetry Collector would be: three services export over OTLP/gRPC (the chart's
 * default), two over OTLP/HTTP with JSON.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { renderedRuleGroups } from "../k8s/lib/alert-rules.js";
import { ensureRenderer, helmOnPath } from "../k8s/lib/renderer.js";
import { OtlpReceiver, type ReceivedSpan, SPAN_KIND } from "../support/otlp-receiver.js";
import { PrometheusServer } from "../support/prometheus-server.js";
import { repoRoot } from "../../tools/system.js";
import { addProduct, eventually, type SagaSystem, startSagaSystem, stopAndReportOnFailure, topUp, waitTerminal } from "../support/saga-system.js";

const receiver = new OtlpReceiver();
let sys: SagaSystem;

beforeAll(async () => {
  const { httpEndpoint, grpcEndpoint } = await receiver.start();
  const overGrpc = { OTEL_EXPORTER_OTLP_ENDPOINT: grpcEndpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" };
  const overHttp = { OTEL_EXPORTER_OTLP_ENDPOINT: httpEndpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" };
  sys = await startSagaSystem({
    name: "tracing",
    env: { OTEL_TRACES_EXPORTER: "otlp", OTEL_BSP_SCHEDULE_DELAY: "100" },
    serviceEnv: { order: overGrpc, inventory: overGrpc, fraud: overGrpc, payment: overHttp, notification: overHttp },
  });
  await addProduct(sys, "TRACE-1", 1_500n, 10n);
  await topUp(sys, "tracy", 10_000n);
}, 120_000);

afterAll(() => receiver.stop());

stopAndReportOnFailure(() => sys);

describe("traces (OTLP exporter configured)", () => {
  test("an order's saga is one trace across all five services, every span's parent in it, continuing the caller's", async () => {
    const traceId = randomBytes(16).toString("hex");
    const callerSpanId = randomBytes(8).toString("hex");
    const { order } = await sys.order.createOrder(
      { customerId: "tracy", items: [{ sku: "TRACE-1", quantity: 2n }] },
      { headers: { traceparent: `00-${traceId}-${callerSpanId}-01` } },
    );
    if (!order) throw new Error("no order");
    expect(await waitTerminal(sys, order.orderId)).toBe("CONFIRMED");

    const services = ["order", "inventory", "fraud", "payment", "notification"];
    /** Spans whose parent is neither in the trace nor the caller's. */
    const orphansIn = (spans: readonly ReceivedSpan[]): ReceivedSpan[] => {
      const ids = new Set(spans.map((s) => s.spanId));
      return spans.filter((s) => s.parentSpanId !== callerSpanId && !ids.has(s.parentSpanId));
    };
    // Spans arrive as each process's batch exporter sends them, a parent possibly after its child:
    // wait for a consumer span of every service, and for every parent.
    const trace = await eventually(
      async () => {
        const spans = receiver.spans.filter((s) => s.traceId === traceId).map((s) => ({ ...s, service: s.service.replace(/^orderflow-/, "") }));
        const consumed = new Set(spans.filter((s) => s.kind === SPAN_KIND.consumer).map((s) => s.service));
        const orphans = orphansIn(spans);
        if (orphans.length > 0) throw new Error(`parents not (yet) exported: ${orphans.map((s) => `${s.service}: ${s.name}`).join(", ")}`);
        return services.every((service) => consumed.has(service)) ? spans : undefined;
      },
      20_000,
      "a consumer span of every service in the order's trace, each span's parent in it",
    );

    // The trace starts where the caller's span left off: CreateOrder's server span is its child.
    const createOrder = trace.filter((s) => s.kind === SPAN_KIND.server && s.name.endsWith("CreateOrder"));
    expect(createOrder.map((s) => [s.service, s.parentSpanId])).toEqual([["order", callerSpanId]]);

    // Connected: every span's parent was exported into the same trace (none lost on the way
    // through an outbox, a bundle or a reply), except the server span whose parent is the caller's.
    expect(orphansIn(trace).map((s) => `${s.service}: ${s.name} (parent ${s.parentSpanId || "none"})`)).toEqual([]);

    expect(new Set(trace.map((s) => `${s.service} ${s.protocol}`))).toEqual(
      new Set(["order grpc", "inventory grpc", "fraud grpc", "payment http/json", "notification http/json"]),
    );

    // Every participant took its command, and the order service each reply, in this trace.
    const consumers = trace.filter((s) => s.kind === SPAN_KIND.consumer).map((s) => `${s.service} ${String(s.attributes["messaging.destination.name"])}`);
    for (const step of ["fraud fraud.cmd.", "inventory inventory.cmd.", "payment payment.cmd.", "order fraud.evt.", "order inventory.evt.", "order payment.evt.", "notification order.evt."]) {
      expect(consumers.some((c) => c.startsWith(step)), `${step} in ${consumers.join(", ")}`).toBe(true);
    }
    // Each message was taken in a span whose parent is its publishing, in the service that sent it:
    // the commands by the order service's outbox relay, the replies by the participants.
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    const sender = (subject: string): string => (subject.includes(".cmd.") || subject.startsWith("order.") ? "order" : subject.split(".")[0]!);
    for (const consumer of trace.filter((s) => s.kind === SPAN_KIND.consumer)) {
      const subject = String(consumer.attributes["messaging.destination.name"]);
      const producer = byId.get(consumer.parentSpanId);
      expect([producer?.kind, producer?.name, producer?.service], `${consumer.service} took ${subject}`).toEqual([SPAN_KIND.producer, `${subject} publish`, sender(subject)]);
    }

    // Postgres calls are traced under the spans that make them: CreateOrder's insert, and the
    // statements each participant applies its batch of commands with (here a batch of one).
    const underConsumerOf = (span: ReceivedSpan, subjectPrefix: string): boolean => {
      for (let up = byId.get(span.parentSpanId); up; up = byId.get(up.parentSpanId)) {
        if (up.kind === SPAN_KIND.consumer && String(up.attributes["messaging.destination.name"]).startsWith(subjectPrefix)) return true;
      }
      return false;
    };
    const statements = trace.filter((s) => s.kind === SPAN_KIND.client && (s.attributes["db.system"] ?? s.attributes["db.system.name"]) === "postgresql");
    expect(statements.some((s) => s.service === "order" && s.parentSpanId === createOrder[0]?.spanId)).toBe(true);
    for (const [service, subject] of [["inventory", "inventory.cmd."], ["payment", "payment.cmd."]] as const) {
      expect(statements.some((s) => s.service === service && underConsumerOf(s, subject)), `${service}'s statements under its command's span`).toBe(true);
    }
  }, 60_000);
});

/** Metric names a PromQL text reads (the names before each selector's braces). */
function metricsRead(promql: string): string[] {
  return [...promql.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\{/g)].map((m) => m[1]!);
}

describe("metrics", () => {
  test("every metric the chart's dashboard and alerts read is one a service exports", async () => {
    const chart = join(repoRoot(), "charts/orderflow");
    const dashboard = JSON.parse(readFileSync(join(chart, "dashboards/orderflow.json"), "utf8")) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
    const read = new Set([
      ...dashboard.panels.flatMap((p) => p.targets ?? []).flatMap((t) => metricsRead(t.expr)),
      // The alerts' expressions, as written in the template (each selector starts {namespace=).
      ...metricsRead(readFileSync(join(chart, "templates/prometheusrule.yaml"), "utf8")).filter((name) => name !== "namespace"),
    ]);
    expect(read.size).toBeGreaterThan(15);
    // Each service's /metrics lists every metric it registered (# TYPE), sampled or not yet.
    const exported = new Map<string, string>();
    for (const service of sys.system.services) {
      const text = await (await fetch(service.metricsUrl)).text();
      for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) exported.set(name!, type!);
    }
    const missing = [...read].filter((name) => {
      const histogram = /^(.*)_(bucket|sum|count)$/.exec(name);
      return !exported.has(name) && !(histogram && exported.get(histogram[1]!) === "histogram");
    });
    expect(missing).toEqual([]);
  });
});

/** The namespace and job labels the chart's ServiceMonitors give release "orderflow"'s targets. */
const NAMESPACE = "orderflow-e2e";
const jobOf = (service: string) => `orderflow-${service}`;

/**
 * Queries that answer nothing on a healthy system (a panel's title, `#n` after it for its nth
 * query from the second on): the streams' bound when none is set. The
 * counters of trouble (refusals, re-sends, timeouts, redeliveries, dead letters) are exported
 * at 0 from the start, so their panels answer with zeros.
 */
const QUIET_WHEN_HEALTHY = new Set(["Saga streams: bytes held and their bound#2"]);

describe("the chart's dashboard and alerts, evaluated by Prometheus", () => {
  test("every dashboard query answers with this system's data, and every alert evaluates without error, none firing", async () => {
    if (!helmOnPath()) ensureRenderer();
    const rules = renderedRuleGroups({ namespace: NAMESPACE, releaseName: "orderflow" });
    const prometheus = await PrometheusServer.start(
      sys.system.services.map((service) => ({
        address: new URL(service.metricsUrl).host,
        labels: { namespace: NAMESPACE, job: jobOf(service.name), service: jobOf(service.name), pod: `${jobOf(service.name)}-0` },
      })),
      [{ name: "orderflow-alerts", content: rules }],
    );
    try {
      await prometheus.until(async () => (await prometheus.query(`up{namespace="${NAMESPACE}"} == 1`)).length === sys.system.services.length, 20_000, "scraping all five services");
      await topUp(sys, "promy", 10_000n);
      // A call refused (the errors panel) and orders concluded while it scrapes; then two scrapes of every
      // service after them, so that rate() over the panels' window has their increments.
      await expect(sys.order.createOrder({ customerId: "promy", items: [{ sku: "TRACE-1", quantity: 0n }] })).rejects.toThrow();
      for (let i = 0; i < 3; i++) {
        const { order } = await sys.order.createOrder({ customerId: "promy", items: [{ sku: "TRACE-1", quantity: 1n }] });
        expect(await waitTerminal(sys, order?.orderId ?? "")).toBe("CONFIRMED");
      }
      const doneAt = Date.now() / 1000;
      await prometheus.until(async () => Number((await prometheus.query(`min(timestamp(up{namespace="${NAMESPACE}"}))`))[0]?.value[1] ?? 0) > doneAt + 1.2, 20_000, "scraping twice after the orders");

      // The dashboard's variables find the namespace and the five jobs.
      const dashboard = JSON.parse(readFileSync(join(repoRoot(), "charts/orderflow/dashboards/orderflow.json"), "utf8")) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
      expect(await prometheus.labelValues("namespace", "nodejs_version_info")).toContain(NAMESPACE);
      const jobs = await prometheus.labelValues("job", `nodejs_version_info{namespace="${NAMESPACE}"}`);
      expect(jobs.sort()).toEqual(sys.system.services.map((service) => jobOf(service.name)).sort());

      // Each query as Grafana sends it: the variables filled in (a multi-value job as a regex alternation).
      const fill = (expr: string) => expr.replaceAll("$namespace", NAMESPACE).replaceAll("$job", `(${jobs.join("|")})`).replaceAll("$__rate_interval", "1m");
      const empty: string[] = [];
      let queries = 0;
      for (const panel of dashboard.panels) {
        for (const [i, target] of (panel.targets ?? []).entries()) {
          queries++;
          const key = i === 0 ? panel.title : `${panel.title}#${i + 1}`;
          const result = await prometheus.query(fill(target.expr));
          if (result.length === 0 && !QUIET_WHEN_HEALTHY.has(key)) empty.push(`${key}: ${target.expr}`);
        }
      }
      expect(queries).toBeGreaterThan(15);
      expect(empty).toEqual([]);

      // The alerts: each evaluated after the orders, healthy, and none pending or firing.
      const started = Date.now();
      await prometheus.until(async () => (await prometheus.rules()).every((rule) => Date.parse(rule.lastEvaluation) > started), 20_000, "evaluating every rule");
      const evaluated = await prometheus.rules();
      expect(evaluated).toHaveLength(7);
      expect(evaluated.filter((rule) => rule.health !== "ok").map((rule) => `${rule.name}: ${rule.lastError}`)).toEqual([]);
      expect(await prometheus.alerts()).toEqual([]);
    } finally {
      await prometheus.stop();
    }
  }, 120_000);
});
