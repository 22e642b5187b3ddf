// Renders charts/orderflow for every meaningful combination of values and
// validates each object against the Kubernetes / CRD schemas, then checks the
// invariants a reviewer would. No cluster and no helm binary needed: see
// lib/renderer.ts for how the chart is rendered.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { serviceNodeFlags } from "../../tools/node-flags.js";
import { checkInvariants, SERVICES, type Expectations } from "./lib/invariants.js";
import { arr, arrOr, at, num, obj, objArr, objArrOr, str, type JsonObject } from "./lib/json.js";
import { CHART_DIR, ensureRenderer, helmLint, helmOnPath, K8S_TEST_DIR, renderChart } from "./lib/renderer.js";
import { nameErrors, parseManifest, validateObject, type K8sObject } from "./lib/validate.js";
import { parser as promqlParser } from "@prometheus-io/lezer-promql";

const NS = "orderflow";
const ci = (f: string) => join(CHART_DIR, "ci", f);

interface Combo {
  name: string;
  files: string[];
  values?: unknown;
  upgrade?: boolean;
  releaseName?: string;
  mesh: Expectations["mesh"];
  postgres: "cnpg" | "external";
  nats: "bundled" | "external";
  autoscaling: boolean;
  expect: Partial<Expectations>;
  /** kind -> expected count */
  counts?: Record<string, number>;
}

const natsBundled = (release = "orderflow") => ({
  externalPodLabels: [{ "app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": release }],
  externalServiceHosts: [release.includes("nats") ? release : `${release}-nats`],
});

const COMBOS: Combo[] = [
  {
    name: "defaults (mesh none, CNPG x3, NATS bundled, Redis bundled, autoscaling on)",
    files: [],
    mesh: "none",
    postgres: "cnpg",
    nats: "bundled",
    autoscaling: true,
    expect: natsBundled(),
    counts: { Deployment: 6, HorizontalPodAutoscaler: 5, PodDisruptionBudget: 5, NetworkPolicy: 8, Cluster: 1, Service: 11 },
  },
  {
    name: "istio (CNPG, NATS bundled, autoscaling on, ServiceMonitor, PrometheusRule, Grafana dashboard)",
    files: [ci("istio-values.yaml")],
    mesh: "istio",
    postgres: "cnpg",
    nats: "bundled",
    autoscaling: true,
    expect: natsBundled(),
    counts: { PeerAuthentication: 5, AuthorizationPolicy: 5, DestinationRule: 5, ServiceMonitor: 5, PrometheusRule: 1 },
  },
  {
    name: "linkerd (CNPG, NATS bundled, autoscaling on, migration hook Jobs)",
    files: [ci("linkerd-values.yaml")],
    mesh: "linkerd",
    postgres: "cnpg",
    nats: "bundled",
    autoscaling: true,
    expect: natsBundled(),
    counts: { Server: 15, HTTPRoute: 20, Job: 4 },
  },
  {
    name: "linkerd upgrade (migration hook Jobs as pre-upgrade)",
    files: [ci("linkerd-values.yaml")],
    upgrade: true,
    mesh: "linkerd",
    postgres: "cnpg",
    nats: "bundled",
    autoscaling: true,
    expect: natsBundled(),
  },
  {
    name: "external Postgres/NATS/Redis, mesh none, autoscaling off",
    files: [ci("external-values.yaml")],
    mesh: "none",
    postgres: "external",
    nats: "external",
    autoscaling: false,
    expect: {
      externalSecrets: ["orderflow-postgres"],
      externalUrls: ["redis://redis.example.internal:6379", "nats://nats.example.internal:4222"],
    },
    counts: { Cluster: 0, HorizontalPodAutoscaler: 0, PodDisruptionBudget: 4, Deployment: 5 },
  },
  {
    name: "istio with external Postgres/NATS, Redis from a Secret, autoscaling off, OTLP",
    files: [ci("istio-external-values.yaml")],
    mesh: "istio",
    postgres: "external",
    nats: "external",
    autoscaling: false,
    expect: { externalSecrets: ["orderflow-postgres", "orderflow-redis"], externalUrls: ["nats://nats.nats-system.svc:4222"] },
  },
  {
    name: "linkerd, single CNPG instance (no read URL), autoscaling off",
    files: [ci("linkerd-single-values.yaml")],
    mesh: "linkerd",
    postgres: "cnpg",
    nats: "bundled",
    autoscaling: false,
    expect: natsBundled(),
  },
  {
    name: "dev values for kind/skaffold",
    files: [ci("dev-values.yaml")],
    mesh: "none",
    postgres: "cnpg",
    nats: "bundled",
    autoscaling: false,
    expect: natsBundled(),
  },
  {
    name: "release name containing the chart name, NetworkPolicy/PDB off, istio",
    files: [],
    releaseName: "shop-orderflow",
    values: {
      mesh: "istio",
      networkPolicy: { enabled: false },
      services: Object.fromEntries(SERVICES.map((s) => [s, { pdb: { enabled: false } }])),
    },
    mesh: "istio",
    postgres: "cnpg",
    nats: "bundled",
    autoscaling: true,
    expect: natsBundled("shop-orderflow"),
    counts: { NetworkPolicy: 0, PodDisruptionBudget: 0 },
  },
];

const stats = { renders: 0, objects: 0, bySource: {} as Record<string, number> };

beforeAll(() => {
  if (!helmOnPath()) ensureRenderer();
}, 300_000);

describe("charts/orderflow renders and validates", () => {
  it("checks that every ci/*.yaml values file is covered by a combination", () => {
    const files = readdirSync(join(CHART_DIR, "ci")).filter((f) => f.endsWith(".yaml"));
    for (const f of files) expect(COMBOS.some((c) => c.files.includes(ci(f))), f).toBe(true);
  });

  for (const combo of COMBOS) {
    it(`renders: ${combo.name}`, async () => {
      const release = combo.releaseName ?? "orderflow";
      const r = renderChart({ valuesFiles: combo.files, values: combo.values, releaseName: release, namespace: NS, upgrade: combo.upgrade, notes: true });
      expect(r.ok, r.stderr).toBe(true);
      if (r.engine === "go-renderer" && combo.nats === "bundled") {
        // The NATS chart is a dependency that cannot be fetched here; the
        // renderer says so and renders the parent chart only.
        expect(r.stderr).toContain('dependency "nats" is not in charts/');
      }
      const objs = parseManifest(r.manifest);
      stats.renders++;
      expect(objs.length).toBeGreaterThan(20);

      const problems: string[] = [];
      for (const o of objs) {
        const v = await validateObject(o);
        stats.objects++;
        stats.bySource[v.source] = (stats.bySource[v.source] ?? 0) + 1;
        for (const e of [...v.errors, ...nameErrors(o)]) problems.push(`${o.kind}/${o.metadata?.name}: ${e}`);
      }
      expect(problems, problems.join("\n")).toEqual([]);

      const exp: Expectations = {
        namespace: NS,
        mesh: combo.mesh,
        externalSecrets: [],
        externalPodLabels: [],
        externalServiceHosts: [],
        externalUrls: [],
        ...combo.expect,
      };
      const violations = checkInvariants(objs, exp);
      expect(violations, violations.join("\n")).toEqual([]);

      for (const [kind, n] of Object.entries(combo.counts ?? {})) {
        expect(objs.filter((o) => o.kind === kind).length, `count of ${kind}`).toBe(n);
      }
      checkComboSpecifics(combo, objs, release);

      if (r.engine === "go-renderer") {
        expect(r.notes).toContain("grpcurl -plaintext");
        expect(r.notes).toContain(`port-forward svc/${release === "orderflow" ? "orderflow" : release}-order`);
        // The monitoring objects rendered are named in the notes, and only those.
        const monitored = objs.some((o) => o.kind === "PrometheusRule");
        expect(r.notes.includes("get prometheusrule"), "notes name the PrometheusRule").toBe(monitored);
        const dashboard = objs.find((o) => o.kind === "ConfigMap" && o.metadata.labels?.grafana_dashboard !== undefined);
        expect(r.notes.includes("dashboard (uid orderflow-overview) from ConfigMap"), "notes name the dashboard").toBe(dashboard !== undefined);
        if (dashboard) expect(r.notes).toContain(`ConfigMap ${dashboard.metadata.name} in ${dashboard.metadata.namespace}`);
      }
      const lint = helmLint(combo.files);
      if (lint) expect(lint.ok, lint.output).toBe(true);
    });
  }

  it("reports what was validated", () => {
    // Printed so CI logs show the coverage of this offline check.
    console.log(`k8s chart check: ${stats.renders} renders, ${stats.objects} objects validated ${JSON.stringify(stats.bySource)}`);
    expect(stats.renders).toBe(COMBOS.length);
  });
});

/** The chart's fullname for a release: the release name alone when it already says orderflow. */
function fullnameOf(release: string): string {
  return release.includes("orderflow") ? release : `${release}-orderflow`;
}

function deploymentOf(objs: K8sObject[], release: string, svc: string): K8sObject {
  const d = objs.find((o) => o.kind === "Deployment" && o.metadata.name === `${fullnameOf(release)}-${svc}`);
  expect(d, `Deployment for ${svc}`).toBeDefined();
  return d!;
}

function envOf(objs: K8sObject[], release: string, svc: string): Record<string, JsonObject> {
  const c = obj(at(deploymentOf(objs, release, svc).spec, "template", "spec", "containers", 0), `${svc} first container`);
  return Object.fromEntries(objArr(c.env, `${svc} env`).map((e) => [str(e.name, `${svc} env name`), e]));
}

function checkComboSpecifics(combo: Combo, objs: K8sObject[], release: string): void {
  const fullname = fullnameOf(release);
  const order = envOf(objs, release, "order");
  const fraud = envOf(objs, release, "fraud");
  expect(order.INVENTORY_URL?.value).toBe(`http://${fullname}-inventory.${NS}.svc:8080`);
  expect(fraud.DATABASE_URL, "fraud has no database").toBeUndefined();
  expect(fraud.REDIS_URL).toBeDefined();
  for (const s of ["payment", "notification"]) expect(envOf(objs, release, s).REDIS_URL, `${s} does not use Redis`).toBeUndefined();
  for (const s of SERVICES) expect(envOf(objs, release, s).NATS_URL).toBeDefined();

  const deployments = objs.filter((o) => o.kind === "Deployment" && o.metadata.labels?.["app.kubernetes.io/component"] !== "redis");
  for (const d of deployments) {
    const replicas = at(d.spec, "replicas");
    if (combo.autoscaling) expect(replicas, `${d.metadata.name} replicas`).toBeUndefined();
    else expect(replicas, `${d.metadata.name} replicas`).toBeGreaterThan(0);
  }

  if (combo.postgres === "cnpg") {
    const cluster = objs.find((o) => o.kind === "Cluster")!;
    expect(cluster).toBeDefined();
    const instances = num(at(cluster.spec, "instances"), "Cluster instances");
    if (combo.name.startsWith("defaults")) expect(instances).toBe(3);
    expect(at(order.DATABASE_URL, "valueFrom", "secretKeyRef")).toEqual({ name: `${cluster.metadata.name}-app`, key: "uri" });
    if (instances > 1) {
      expect(order.DATABASE_READ_URL?.value).toBe(`postgresql://$(DB_USERNAME):$(DB_PASSWORD)@${cluster.metadata.name}-r.${NS}.svc:5432/$(DB_NAME)`);
    } else {
      expect(order.DATABASE_READ_URL, "no read URL without replicas").toBeUndefined();
    }
  } else {
    expect(objs.some((o) => o.kind === "Cluster")).toBe(false);
    expect(at(order.DATABASE_URL, "valueFrom", "secretKeyRef", "name")).toBe("orderflow-postgres");
  }
  if (combo.nats === "bundled") expect(order.NATS_URL?.value).toBe(`nats://${release.includes("nats") ? release : `${release}-nats`}.${NS}.svc:4222`);
  // Every service ensures the streams: they must all ask for the same copies (3 on the bundled NATS's cluster).
  const streamReplicas = new Set(SERVICES.map((s) => envOf(objs, release, s).NATS_STREAM_REPLICAS?.value));
  expect(streamReplicas.size).toBe(1);
  if (combo.name.startsWith("defaults")) expect([...streamReplicas][0]).toBe("3");

  // Migrations: initContainer by default; hook Jobs when configured.
  const jobs = objs.filter((o) => o.kind === "Job");
  if (jobs.length) {
    for (const j of jobs) {
      const hook = j.metadata.annotations?.["helm.sh/hook"] ?? "";
      expect(hook).toContain("post-install");
      expect(hook).toContain("pre-upgrade");
      const cmd = arr(at(j.spec, "template", "spec", "containers", 0, "command"), `${j.metadata.name} command`);
      expect(cmd.at(-1)).toBe("migrate");
      expect(cmd.slice(0, -2), `${j.metadata.name} node flags`).toEqual(["node", ...serviceNodeFlags]);
    }
  } else {
    for (const s of ["order", "inventory", "payment", "notification"]) {
      const d = deploymentOf(objs, release, s);
      const init = objArrOr(at(obj(at(d.spec, "template", "spec"), `${s} pod spec`), "initContainers"), `${s} initContainers`);
      expect(init.map((c) => arr(c.command, `${s} initContainer command`)), `${s} migrate initContainer`).toEqual([["node", ...serviceNodeFlags, `dist/services/${s}/main.js`, "migrate"]]);
    }
  }
  // The pods start node as npm start and the bench do (tools/node-flags.ts).
  for (const s of SERVICES) {
    expect(at(deploymentOf(objs, release, s).spec, "template", "spec", "containers", 0, "command"), `${s} command`).toEqual(["node", ...serviceNodeFlags, `dist/services/${s}/main.js`]);
  }

  // NetworkPolicies follow the real call graph.
  const nps = objs.filter((o) => o.kind === "NetworkPolicy");
  if (nps.length) {
    const egressPorts = (svc: string) =>
      new Set(
        objArr(at(nps.find((n) => n.metadata.name === `${fullname}-${svc}`)!.spec, "egress"), `${svc} egress`)
          // rules towards the mesh control plane (another namespace) aside
          .filter((r) => !objArrOr(r.to, `${svc} egress to`).some((t) => t.namespaceSelector))
          .flatMap((r) => objArrOr(r.ports, `${svc} egress ports`).map((p) => p.port)),
      );
    expect(egressPorts("fraud").has(5432), "fraud has no database").toBe(false);
    expect(egressPorts("fraud").has(6379)).toBe(true);
    for (const s of ["payment", "notification"]) {
      expect(egressPorts(s).has(6379), `${s} does not use Redis`).toBe(false);
      expect(egressPorts(s).has(5432)).toBe(true);
    }
    for (const s of SERVICES) expect(egressPorts(s).has(4222), `${s} -> NATS`).toBe(true);
    for (const s of SERVICES.filter((x) => x !== "order")) expect(egressPorts(s).has(8080), `${s} calls no service`).toBe(false);
    expect(egressPorts("order").has(8080), "order -> inventory").toBe(true);
    const inv = obj(nps.find((n) => n.metadata.name === `${fullname}-inventory`)!.spec, "inventory NetworkPolicy spec");
    const fromOrder = objArr(inv.ingress, "inventory ingress").some((r) => objArrOr(r.from, "inventory ingress from").some((f) => at(f, "podSelector", "matchLabels", "app.kubernetes.io/component") === "order"));
    expect(fromOrder, "inventory admits order").toBe(true);
    const pay = obj(nps.find((n) => n.metadata.name === `${fullname}-payment`)!.spec, "payment NetworkPolicy spec");
    const payFromPods = objArr(pay.ingress, "payment ingress").flatMap((r) => objArrOr(r.from, "payment ingress from").filter((f) => f.podSelector && !f.namespaceSelector));
    expect(payFromPods, "payment has no service-to-service callers").toEqual([]);
  }

  // Mesh-specific authorization: inventory accepts order's identity only (plus configured clients).
  if (combo.mesh === "istio") {
    const ap = objs.find((o) => o.kind === "AuthorizationPolicy" && o.metadata.name === `${fullname}-inventory`)!;
    const principals = objArr(at(ap.spec, "rules"), "inventory rules")
      .flatMap((r) => objArrOr(r.from, "inventory rule from").flatMap((f) => arrOr(at(f, "source", "principals"), "principals")))
      .map((p) => str(p, "principal"));
    expect(principals).toContain(`cluster.local/ns/${NS}/sa/${fullname}-order`);
    expect(principals.some((p) => p.endsWith(`/sa/${fullname}-payment`))).toBe(false);
    const pa = objs.find((o) => o.kind === "PeerAuthentication" && o.metadata.name === `${fullname}-order`)!;
    expect(obj(at(pa.spec, "mtls"), "PeerAuthentication mtls").mode).toBe("STRICT");
  }
  if (combo.mesh === "linkerd") {
    const mtls = objs.find((o) => o.kind === "MeshTLSAuthentication" && o.metadata.name === `${fullname}-inventory-callers`)!;
    expect(at(mtls.spec, "identityRefs")).toEqual([{ kind: "ServiceAccount", name: `${fullname}-order` }]);
    expect(objs.some((o) => o.kind === "MeshTLSAuthentication" && o.metadata.name === `${fullname}-payment-callers`)).toBe(false);
  }
}

describe("the NATS dependency", () => {
  const natsValues = obj(parse(readFileSync(join(K8S_TEST_DIR, "schemas/nats-chart-values.yaml"), "utf8")), "NATS chart values");
  const natsChart = obj(parse(readFileSync(join(K8S_TEST_DIR, "schemas/nats-chart-Chart.yaml"), "utf8")), "NATS Chart.yaml");
  const chart = obj(parse(readFileSync(join(CHART_DIR, "Chart.yaml"), "utf8")), "Chart.yaml");
  const ours = obj(obj(parse(readFileSync(join(CHART_DIR, "values.yaml"), "utf8")), "values.yaml").nats, "values.yaml nats");

  it("is declared with a condition and the published version", () => {
    const dep = objArr(chart.dependencies, "Chart.yaml dependencies").find((d) => d.name === "nats")!;
    expect(dep.condition).toBe("nats.enabled");
    expect(dep.version).toBe(natsChart.version);
    expect(dep.repository).toMatch(/^https:\/\//);
  });

  it("passes only values the NATS chart defines (it has no values.schema.json)", () => {
    const problems: string[] = [];
    const walk = (v: unknown, ref: unknown, path: string) => {
      if (v === null || typeof v !== "object" || Array.isArray(v)) return;
      for (const [k, child] of Object.entries(obj(v))) {
        const p = `${path}.${k}`;
        if (p === "nats.enabled") continue; // the dependency condition, read by Helm
        if (ref === null || typeof ref !== "object" || !(k in ref)) {
          problems.push(`${p} is not a value of the NATS chart`);
          continue;
        }
        // merge/patch blocks are free-form Kubernetes objects / JSON patches.
        if (k === "merge" || k === "patch") continue;
        walk(child, (ref as Record<string, unknown>)[k], p);
      }
    };
    walk(ours, natsValues, "nats");
    expect(problems).toEqual([]);
    for (const c of COMBOS) for (const f of c.files) walk(obj(parse(readFileSync(f, "utf8")), f).nats, natsValues, "nats");
    expect(problems).toEqual([]);
    expect(at(ours, "config", "jetstream", "enabled"), "JetStream on").toBe(true);
  });
});

/** Where PromQL's grammar fails to parse `expr` (lezer-promql marks those spots with error nodes). */
function promqlSyntaxErrors(expr: string): string[] {
  const errors: string[] = [];
  promqlParser.parse(expr).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(`at ${node.from}: ${JSON.stringify(expr.slice(node.from, node.from + 20))}`);
    },
  });
  return errors;
}

describe("the PrometheusRule (prometheusRule.enabled)", () => {
  it("has a PromQL check that finds a broken expression", () => {
    expect(promqlSyntaxErrors('sum by (namespace) (increase(x_total{namespace="a"}[5m])) > 0')).toEqual([]);
    expect(promqlSyntaxErrors('sum by (namespace (increase(x_total{namespace="a"}[5m])) > 0')).not.toEqual([]);
  });


  // Each alert and the metric it reads (README, Observability); gauges are reported alike by
  // every replica (the orders in progress across all of them, the outbox rows of a schema), so
  // they are aggregated with max, never summed.
  const ALERTS: Record<string, { metric: string; type: "counter" | "gauge" | "share of a limit" }> = {
    OrderFlowAdmissionRefused: { metric: "orderflow_order_admission_refused_total", type: "counter" },
    OrderFlowOrdersInProgressHigh: { metric: "orderflow_saga_orders_in_progress", type: "share of a limit" },
    OrderFlowSagaStepTimeouts: { metric: "orderflow_saga_step_timeouts_total", type: "counter" },
    OrderFlowDeadLetters: { metric: "orderflow_bus_dead_letters_total", type: "counter" },
    OrderFlowOutboxBacklog: { metric: "orderflow_outbox_backlog", type: "gauge" },
    OrderFlowConsumerBehind: { metric: "orderflow_bus_consumer_pending", type: "gauge" },
    OrderFlowStreamNearlyFull: { metric: "orderflow_bus_stream_bytes", type: "share of a limit" },
  };
  const rulesOf = (values: unknown, namespace = NS, releaseName = "orderflow"): { objs: K8sObject[]; rules: JsonObject[]; scraped: string[] } => {
    const r = renderChart({ values, namespace, releaseName });
    expect(r.ok, r.stderr).toBe(true);
    const all = parseManifest(r.manifest);
    const objs = all.filter((o) => o.kind === "PrometheusRule");
    const rules = objs.flatMap((o) => objArr(at(o.spec, "groups"), "groups").flatMap((g) => objArr(g.rules, `group ${String(g.name)} rules`)));
    // The Services the ServiceMonitors scrape (their metrics port): Prometheus's job label of each target.
    const scraped = all.filter((o) => o.kind === "Service" && objArrOr(at(o.spec, "ports")).some((p) => p.name === "http-metrics")).map((o) => o.metadata.name ?? "");
    return { objs, rules, scraped };
  };

  it("renders nothing with the default values", () => {
    expect(rulesOf(undefined).objs).toEqual([]);
  });

  it("renders one rule named after the release, with the configured labels, that the CRD accepts", async () => {
    const { objs } = rulesOf({ prometheusRule: { enabled: true, labels: { release: "kube-prometheus-stack" } } });
    expect(objs).toHaveLength(1);
    const rule = objs[0]!;
    expect(rule.metadata.name).toBe("orderflow");
    expect(rule.metadata.namespace).toBe(NS);
    expect(rule.metadata.labels?.release).toBe("kube-prometheus-stack");
    const v = await validateObject(rule);
    expect(v.source).toBe("crd");
    expect([...v.errors, ...nameErrors(rule)]).toEqual([]);
  });

  it("has the seven alerts, each reading its metric from the release's own targets, with for, severity, summary and description", () => {
    const ns = "shop";
    const { rules, scraped } = rulesOf({ prometheusRule: { enabled: true } }, ns, "shop-a");
    expect(scraped).toHaveLength(5);
    expect(rules.map((r) => r.alert).sort()).toEqual(Object.keys(ALERTS).sort());
    for (const rule of rules) {
      const name = str(rule.alert, "alert");
      const { metric, type } = ALERTS[name]!;
      const expr = str(rule.expr, `${name} expr`);
      // Every selector names the alert's metric and only the release's namespace.
      const selectors = [...expr.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}/g)].map((m) => [m[1], m[2]]);
      expect(selectors.length, `${name}: selectors in ${expr}`).toBeGreaterThan(0);
      for (const [m, matchers] of selectors) {
        expect(type === "share of a limit" ? [metric, `${metric}_limit`] : [metric], `${name} reads`).toContain(m);
        const [namespace, job] = matchers!.split(", ");
        expect(namespace, `${name} matchers`).toBe(`namespace="${ns}"`);
        // The job matcher takes this release's five Services, and not another release's in the namespace.
        // Prometheus anchors a regex matcher at both ends, around the whole alternation.
        const jobs = new RegExp(`^(?:${/^job=~"(.+)"$/.exec(job ?? "")?.[1] ?? "(?!)"})$`);
        expect(scraped.filter((service) => jobs.test(service)), `${name}: ${job}`).toEqual(scraped);
        expect(["shop-b-orderflow-order", "shop-a-orderflow-order-2", "shop-a-orderflow-orders"].filter((other) => jobs.test(other)), `${name}: ${job}`).toEqual([]);
      }
      // Prometheus's own grammar (the parser its web UI uses) finds no syntax error.
      expect(promqlSyntaxErrors(expr), `${name}: ${expr}`).toEqual([]);
      if (type === "counter") {
        expect(expr, `${name}: a counter is read through increase()`).toContain(`increase(${metric}{`);
        expect(expr).toMatch(/^sum by \(namespace[,)]/);
        expect(expr).toMatch(/> \d+$/);
      } else if (type === "gauge") {
        expect(expr, `${name}: a gauge every replica reports is aggregated with max`).toMatch(new RegExp(`^max by \\(namespace[^)]*\\) \\(${metric}\\{[^}]*\\}\\) > \\d+$`));
      } else {
        // The gauge against a share of the limit the replicas report, silent while the limit is 0.
        expect(expr.replace(/\s+/g, " "), `${name}: both gauges aggregated with max, the limit only where set`).toMatch(
          new RegExp(`^max by \\((namespace[^)]*)\\) \\(${metric}\\{[^}]*\\}\\) > [0-9.]+ \\* max by \\(\\1\\) \\(${metric}_limit\\{[^}]*\\} > 0\\)$`),
        );
      }
      expect(str(rule.for, `${name} for`)).toMatch(/^\d+m$/);
      expect(["warning", "critical"]).toContain(at(rule, "labels", "severity"));
      expect(str(at(rule, "annotations", "summary"), `${name} summary`).length).toBeGreaterThan(20);
      const description = str(at(rule, "annotations", "description"), `${name} description`);
      // Prometheus's own template reaches it (Helm must not expand it).
      expect(description, `${name} description`).toMatch(/\{\{ \$value \| humanize(1024)? \}\}/);
      expect(description).toContain("{{ $labels.namespace }}");
    }
  });

  it("takes the four thresholds from the values", () => {
    const { rules } = rulesOf({ prometheusRule: { enabled: true, ordersInProgressRatio: 0.9, outboxBacklogThreshold: 250, consumerPendingThreshold: 5000, streamFullRatio: 0.5 } });
    const rule = (alert: string) => rules.find((r) => r.alert === alert);
    expect(str(rule("OrderFlowOrdersInProgressHigh")?.expr, "expr")).toMatch(/> 0\.9 \* max by/);
    expect(str(at(rule("OrderFlowOrdersInProgressHigh"), "annotations", "description"), "description")).toContain("more than 90 % of SAGA_MAX_ORDERS_IN_PROGRESS");
    expect(str(rule("OrderFlowOutboxBacklog")?.expr, "expr")).toMatch(/\) > 250$/);
    expect(str(rule("OrderFlowConsumerBehind")?.expr, "expr")).toMatch(/\) > 5000$/);
    expect(str(rule("OrderFlowStreamNearlyFull")?.expr, "expr")).toMatch(/> 0\.5 \* max by/);
    expect(str(at(rule("OrderFlowStreamNearlyFull"), "annotations", "description"), "description")).toContain("more than 50 % of its bound");
  });

  it("refuses a share of a bound outside (0, 1]", () => {
    for (const key of ["ordersInProgressRatio", "streamFullRatio"]) {
      for (const ratio of [0, 1.5, "most"]) expect(renderChart({ values: { prometheusRule: { enabled: true, [key]: ratio } } }).ok, `${key} ${String(ratio)}`).toBe(false);
    }
    const { rules } = rulesOf({ prometheusRule: { enabled: true } });
    expect(rules.find((r) => r.alert === "OrderFlowOrdersInProgressHigh")?.expr).toMatch(/> 0\.75 \* max by/);
    expect(rules.find((r) => r.alert === "OrderFlowStreamNearlyFull")?.expr).toMatch(/> 0\.8 \* max by/);
  });
});

describe("the Grafana dashboard (grafanaDashboard.enabled)", () => {
  const dashboardsOf = (values: unknown, namespace = NS): K8sObject[] => {
    const r = renderChart({ values, namespace });
    expect(r.ok, r.stderr).toBe(true);
    return parseManifest(r.manifest).filter((o) => o.kind === "ConfigMap" && o.metadata.name?.endsWith("-dashboard"));
  };

  it("renders nothing with the default values", () => {
    expect(dashboardsOf(undefined)).toEqual([]);
  });

  it("renders the dashboard file into a ConfigMap for Grafana's sidecar, in the namespace asked for", async () => {
    const [configMap, ...more] = dashboardsOf({ grafanaDashboard: { enabled: true, annotations: { grafana_folder: "OrderFlow" }, namespace: "monitoring" } });
    expect(more).toEqual([]);
    expect(configMap!.metadata.labels?.grafana_dashboard).toBe("1");
    expect(configMap!.metadata.annotations?.grafana_folder).toBe("OrderFlow");
    expect(configMap!.metadata.namespace).toBe("monitoring");
    const v = await validateObject(configMap!);
    expect([...v.errors, ...nameErrors(configMap!)]).toEqual([]);
    const file = readFileSync(join(CHART_DIR, "dashboards/orderflow.json"), "utf8");
    expect(JSON.parse(str(at(configMap, "data", "orderflow.json"), "data"))).toEqual(JSON.parse(file));
    expect(dashboardsOf({ grafanaDashboard: { enabled: true } })[0]!.metadata.namespace).toBe(NS);
  });

  const dashboard = JSON.parse(readFileSync(join(CHART_DIR, "dashboards/orderflow.json"), "utf8")) as JsonObject;
  const panels = objArr(dashboard.panels, "panels");
  const graphs = panels.filter((p) => p.type !== "row");

  it("lets the viewer pick the data source, the namespace and the services", () => {
    const variables = objArr(at(dashboard, "templating", "list"), "templating");
    expect(variables.map((v) => v.name)).toEqual(["datasource", "namespace", "job"]);
    expect(variables[0]).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(str(dashboard.uid, "uid")).toMatch(/^[a-z0-9-]{1,40}$/);
  });

  it("has panels laid out on Grafana's 24 columns without overlapping", () => {
    const cells = new Set<string>();
    for (const panel of panels) {
      const { x, y, w, h } = obj(panel.gridPos, "gridPos") as { x: number; y: number; w: number; h: number };
      expect(x + w, String(panel.title)).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
        expect(cells.has(`${i},${j}`), `${String(panel.title)} overlaps at ${i},${j}`).toBe(false);
        cells.add(`${i},${j}`);
      }
    }
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
  });

  it("queries, in every panel, only the chosen namespace and services, in PromQL that Prometheus's grammar parses", () => {
    expect(graphs.length).toBeGreaterThanOrEqual(12);
    for (const panel of graphs) {
      const title = str(panel.title, "title");
      expect(at(panel, "datasource", "uid"), title).toBe("${datasource}");
      const targets = objArr(panel.targets, `${title} targets`);
      expect(targets.length, title).toBeGreaterThan(0);
      for (const target of targets) {
        const expr = str(target.expr, `${title} expr`);
        // Grafana fills in $__rate_interval (a duration) and the variables (inside label values).
        expect(promqlSyntaxErrors(expr.replaceAll("$__rate_interval", "1m")), `${title}: ${expr}`).toEqual([]);
        const selectors = [...expr.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}/g)];
        expect(selectors.length, `${title}: ${expr}`).toBeGreaterThan(0);
        for (const [, , matchers] of selectors) expect(matchers, `${title}: ${expr}`).toMatch(/^namespace="\$namespace", job=~"\$job"/);
        if (expr.includes("rate(")) expect(expr, `${title}: rates over Grafana's interval`).toContain("[$__rate_interval]");
      }
    }
  });
});

describe("values.schema.json rejects wrong values", () => {
  const cases: { name: string; values: unknown; error: RegExp }[] = [
    { name: "unknown mesh", values: { mesh: "consul" }, error: /mesh.*one of.*none.*istio.*linkerd/s },
    { name: "misspelt top-level key", values: { meshh: "istio" }, error: /Additional property meshh is not allowed/ },
    { name: "bad log level", values: { logLevel: "verbose" }, error: /logLevel/ },
    { name: "zero CNPG instances", values: { postgres: { cnpg: { instances: 0 } } }, error: /postgres\.cnpg\.instances/ },
    { name: "external Postgres without a Secret", values: { postgres: { mode: "external" } }, error: /existingSecret/ },
    { name: "unknown Postgres mode", values: { postgres: { mode: "rds" } }, error: /postgres\.mode/ },
    { name: "NATS disabled without a URL", values: { nats: { enabled: false } }, error: /externalNats/ },
    { name: "Redis disabled without URL or Secret", values: { redis: { enabled: false } }, error: /redis\.external/ },
    { name: "replica count as a string", values: { services: { order: { replicaCount: "two" } } }, error: /services\.order\.replicaCount.*integer/s },
    { name: "HPA target over 100 %", values: { services: { fraud: { autoscaling: { targetCPUUtilizationPercentage: 150 } } } }, error: /targetCPUUtilizationPercentage/ },
    { name: "unknown service key", values: { services: { order: { replicas: 3 } } }, error: /Additional property replicas is not allowed/ },
    { name: "unknown service", values: { services: { shipping: { enabled: true } } }, error: /Additional property shipping is not allowed/ },
    { name: "call to an unknown service", values: { services: { order: { calls: ["shipping"] } } }, error: /services\.order\.calls/ },
    { name: "privileged port", values: { ports: { grpc: 80 } }, error: /ports\.grpc/ },
    { name: "bad memory quantity", values: { services: { order: { resources: { limits: { memory: "lots" } } } } }, error: /memory/ },
    { name: "bad image digest", values: { image: { digest: "latest" } }, error: /image\.digest/ },
    { name: "bad CIDR", values: { linkerd: { clientNetworks: ["everyone"] } }, error: /clientNetworks/ },
    { name: "migration mode typo", values: { migrations: { mode: "init" } }, error: /migrations\.mode/ },
    { name: "the alert threshold's old name (now ordersInProgressRatio)", values: { prometheusRule: { enabled: true, ordersInProgressThreshold: 1500 } }, error: /Additional property ordersInProgressThreshold is not allowed/ },
    { name: "dashboard in an invalid namespace", values: { grafanaDashboard: { enabled: true, namespace: "Monitoring!" } }, error: /grafanaDashboard\.namespace/ },
  ];
  for (const c of cases) {
    it(`rejects: ${c.name}`, () => {
      const r = renderChart({ values: c.values });
      expect(r.ok, `render unexpectedly succeeded for ${JSON.stringify(c.values)}`).toBe(false);
      // The exact wording is the Helm 3 (gojsonschema) one; a real helm of
      // another version words it differently but must still refuse.
      if (r.engine === "go-renderer") expect(r.stderr).toMatch(c.error);
      else expect(r.stderr).toMatch(/schema|values don't meet/i);
    });
  }

  it("rejects min > max replicas with a clear message (template check)", () => {
    const r = renderChart({ values: { services: { order: { autoscaling: { minReplicas: 5, maxReplicas: 2 } } } } });
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(/services\.order\.autoscaling\.minReplicas .* maxReplicas/);
  });

  it("rejects a Postgres max_connections below the pools at full scale (template check)", () => {
    const r = renderChart({ values: { postgres: { cnpg: { parameters: { max_connections: "100" } } } } });
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(/max_connections \(100\) is below what the database services may open at full scale/);
  });

  it("counts a rolling update's surge in the connections a full scale may open (25 %, rounded up, per service)", () => {
    // Defaults: order, inventory and payment up to 10 pods (+3 during a rollout), notification up to 6 (+2).
    const below = renderChart({ values: { postgres: { cnpg: { parameters: { max_connections: "855" } } } } });
    expect(below.ok).toBe(false);
    expect(below.stderr).toMatch(/\(856 = 47 pods, a rolling update's surge included/);
    expect(renderChart({ values: { postgres: { cnpg: { parameters: { max_connections: "856" } } } } }).ok).toBe(true);
  });

  it("rejects a Postgres memory limit below what its connections at full scale may take (template check)", () => {
    const withPostgres = (cnpg: Record<string, unknown>) => renderChart({ values: { postgres: { cnpg } } });
    // Defaults: 856 connections x 4 Mi + shared_buffers 128 Mi + 256 Mi = 3,808 Mi.
    const small = withPostgres({ resources: { limits: { memory: "1Gi" } } });
    expect(small.ok).toBe(false);
    expect(small.stderr).toMatch(/limits\.memory \(1Gi = 1024 Mi\) is below what Postgres may take at full scale \(3808 Mi = shared_buffers 128 Mi \+ 856 connections x 4 Mi \+ 256 Mi/);
    expect(withPostgres({ resources: { limits: { memory: "3807Mi" } } }).ok).toBe(false);
    expect(withPostgres({ resources: { limits: { memory: "3808Mi" } } }).ok).toBe(true);
    expect(withPostgres({ resources: { limits: { memory: "3.75Gi" } } }).ok).toBe(true);
    expect(withPostgres({ resources: { limits: { memory: "4000M" } } }).ok).toBe(true);
    // shared_buffers counts, in Postgres's units or 8 kB pages.
    const buffers = withPostgres({ parameters: { max_connections: "900", shared_buffers: "1GB" } });
    expect(buffers.ok).toBe(false);
    expect(buffers.stderr).toMatch(/\(4704 Mi = shared_buffers 1024 Mi \+ 856 connections/);
    expect(withPostgres({ parameters: { max_connections: "900", shared_buffers: "16384" } }).ok).toBe(true);
    expect(withPostgres({ parameters: { max_connections: "900", shared_buffers: "plenty" } }).stderr).toMatch(/shared_buffers \(plenty\): give a whole number/);
    // Fewer pods at full scale need less; no limit, nothing to check.
    const onePodEach = Object.fromEntries(["order", "inventory", "fraud", "payment", "notification"].map((name) => [name, { autoscaling: { enabled: false }, replicaCount: 1 }]));
    expect(renderChart({ values: { services: onePodEach, postgres: { cnpg: { resources: { limits: { memory: "1Gi" } } } } } }).ok).toBe(true);
    expect(withPostgres({ resources: { limits: null } }).ok).toBe(true);
  });

  it("bounds each saga stream by three quarters of the bundled NATS's file store shared by eight, or as set for an external one", () => {
    const maxBytesOf = (values: unknown) => {
      const r = renderChart({ values });
      expect(r.ok, r.stderr).toBe(true);
      return envOf(parseManifest(r.manifest), "orderflow", "order").NATS_STREAM_MAX_BYTES?.value;
    };
    expect(maxBytesOf({})).toBe(String((10 * 2 ** 30 * 3) / 32));
    expect(maxBytesOf({ nats: { config: { jetstream: { fileStore: { maxSize: "20Gi" } } } } })).toBe(String((20 * 2 ** 30 * 3) / 32));
    expect(maxBytesOf({ nats: { enabled: false }, externalNats: { url: "nats://nats.example:4222" } })).toBe("-1");
    expect(maxBytesOf({ nats: { enabled: false }, externalNats: { url: "nats://nats.example:4222", streamMaxBytes: 5_000_000_000 } })).toBe("5000000000");
    const unreadable = renderChart({ values: { nats: { config: { jetstream: { fileStore: { pvc: { size: "ten gigs" } } } } } } });
    expect(unreadable.ok).toBe(false);
    expect(unreadable.stderr).toMatch(/nats\.config\.jetstream\.fileStore size \(ten gigs\): give a number/);
  });

  it("keeps one copy of each saga stream on a NATS without a cluster, as many as asked for on an external one", () => {
    const replicasOf = (values: unknown) => {
      const r = renderChart({ values });
      expect(r.ok, r.stderr).toBe(true);
      return envOf(parseManifest(r.manifest), "orderflow", "order").NATS_STREAM_REPLICAS?.value;
    };
    expect(replicasOf({ nats: { config: { cluster: { enabled: false } } } })).toBe("1");
    expect(replicasOf({ nats: { enabled: false }, externalNats: { url: "nats://nats.example:4222", streamReplicas: 3 } })).toBe("3");
    expect(replicasOf({ nats: { enabled: false }, externalNats: { url: "nats://nats.example:4222" } })).toBe("1");
  });

  it("scales on CPU, and on memory too only where a memory target is set", () => {
    const r = renderChart({ values: { services: { order: { autoscaling: { targetMemoryUtilizationPercentage: 85 } } } } });
    expect(r.ok).toBe(true);
    const targets = (name: string) => {
      const hpa = parseManifest(r.manifest).find((o) => o.kind === "HorizontalPodAutoscaler" && o.metadata.name === name);
      return objArr(at(hpa, "spec", "metrics"), `${name} metrics`).map((m) => [at(m, "resource", "name"), at(m, "resource", "target", "averageUtilization")]);
    };
    expect(targets("orderflow-order")).toEqual([["cpu", 70], ["memory", 85]]);
    expect(targets("orderflow-payment")).toEqual([["cpu", 70]]);
  });

  it("refuses a cluster older than Chart.yaml's kubeVersion (native gRPC probes are GA in 1.27)", () => {
    const r = renderChart({ kubeVersion: "v1.26.5" });
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(/incompatible with Kubernetes/);
    expect(renderChart({ kubeVersion: "v1.27.0" }).ok).toBe(true);
  });

  it("rejects a call to a disabled service (template check)", () => {
    const r = renderChart({ values: { services: { inventory: { enabled: false } } } });
    expect(r.ok).toBe(false);
    expect(r.stderr).toMatch(/services\.order calls inventory, which is disabled/);
  });
});
