// The schema checks must fail on broken objects, or their passing means nothing.
import { describe, expect, it } from "vitest";
import { checkInvariants } from "./lib/invariants.js";
import { renderChart } from "./lib/renderer.js";
import { at, obj, objArr, type JsonObject } from "./lib/json.js";
import { parseManifest, validateObject, type K8sObject } from "./lib/validate.js";

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function render(values: unknown = {}): K8sObject[] {
  const r = renderChart({ values });
  expect(r.ok, r.stderr).toBe(true);
  return parseManifest(r.manifest);
}

const find = (objs: K8sObject[], kind: string, name?: string) => {
  const o = objs.find((x) => x.kind === kind && (!name || x.metadata.name === name));
  expect(o, `${kind} ${name ?? ""}`).toBeDefined();
  return clone(o!);
};
/** The object's spec, to mutate in place. */
const spec = (o: K8sObject): JsonObject => obj(o.spec, `${o.kind} spec`);
/** The first container of a workload's pod template, to mutate in place. */
const firstContainer = (o: K8sObject): JsonObject => obj(at(o.spec, "template", "spec", "containers", 0), `${o.kind} first container`);

describe("schema validation catches mistakes", () => {
  const base = render();
  const istio = render({ mesh: "istio", serviceMonitor: { enabled: true }, prometheusRule: { enabled: true } });
  /** The first group of the PrometheusRule, to mutate in place. */
  const firstRuleGroup = (o: K8sObject): JsonObject => obj(at(o.spec, "groups", 0), "first rule group");
  /** The first alerting rule of the PrometheusRule, to mutate in place. */
  const firstRule = (o: K8sObject): JsonObject => obj(at(o.spec, "groups", 0, "rules", 0), "first rule");
  const linkerd = render({ mesh: "linkerd" });

  const mutations: { name: string; obj: () => K8sObject; error: RegExp }[] = [
    {
      name: "unknown field in a Deployment container (typo)",
      obj: () => { const d = find(base, "Deployment", "orderflow-order"); firstContainer(d).readinesProbe = {}; return d; },
      error: /unknown field "readinesProbe"/,
    },
    {
      name: "wrong type in a Deployment",
      obj: () => { const d = find(base, "Deployment", "orderflow-order"); obj(at(firstContainer(d), "ports", 0), "first port").containerPort = "8080"; return d; },
      error: /containerPort/,
    },
    {
      name: "missing required field (container image name)",
      obj: () => { const d = find(base, "Deployment", "orderflow-order"); delete firstContainer(d).name; return d; },
      error: /name/,
    },
    {
      name: "unknown field in gRPC probe",
      obj: () => { const d = find(base, "Deployment", "orderflow-order"); obj(at(firstContainer(d), "livenessProbe", "grpc"), "gRPC probe").servise = "x"; return d; },
      error: /unknown field "servise"/,
    },
    {
      name: "HPA with autoscaling/v1 style field",
      obj: () => { const h = find(base, "HorizontalPodAutoscaler"); spec(h).targetCPUUtilizationPercentage = 50; return h; },
      error: /unknown field "targetCPUUtilizationPercentage"/,
    },
    {
      name: "CNPG Cluster with an unknown field",
      obj: () => { const c = find(base, "Cluster"); spec(c).replicas = 3; return c; },
      error: /additional properties|replicas/,
    },
    {
      name: "CNPG Cluster with instances as a string",
      obj: () => { const c = find(base, "Cluster"); spec(c).instances = "3"; return c; },
      error: /instances.*integer|must be integer/,
    },
    {
      name: "Istio AuthorizationPolicy with an invalid action",
      obj: () => { const a = find(istio, "AuthorizationPolicy"); spec(a).action = "PERMIT"; return a; },
      error: /action|allowed values/,
    },
    {
      name: "Istio PeerAuthentication with an unknown field",
      obj: () => { const a = find(istio, "PeerAuthentication"); obj(spec(a).mtls, "mtls").strict = true; return a; },
      error: /unknown field "strict"/,
    },
    {
      name: "Linkerd Server without a port",
      obj: () => { const s = find(linkerd, "Server"); delete spec(s).port; return s; },
      error: /port/,
    },
    {
      name: "Linkerd AuthorizationPolicy with an unknown field",
      obj: () => { const a = find(linkerd, "AuthorizationPolicy"); spec(a).requiredAuthentications = []; return a; },
      error: /additional properties|requiredAuthentications/,
    },
    {
      name: "ServiceMonitor endpoint with an unknown field",
      obj: () => { const s = find(istio, "ServiceMonitor"); obj(at(s.spec, "endpoints", 0), "first endpoint").portName = "x"; return s; },
      error: /additional properties|portName/,
    },
    {
      name: "PrometheusRule alert with an unknown field (summary outside annotations)",
      obj: () => { const r = find(istio, "PrometheusRule"); firstRule(r).summary = "x"; return r; },
      error: /additional properties|summary/,
    },
    {
      name: "PrometheusRule alert with a malformed for",
      obj: () => { const r = find(istio, "PrometheusRule"); firstRule(r).for = "5 minutes"; return r; },
      error: /\/for: must match pattern/,
    },
    {
      name: "PrometheusRule group with a partial_response_strategy outside abort|warn (a Go (?i) pattern)",
      obj: () => { const r = find(istio, "PrometheusRule"); firstRuleGroup(r).partial_response_strategy = "ignore"; return r; },
      error: /partial_response_strategy: must match pattern/,
    },
    {
      name: "bad metadata on a custom resource",
      obj: () => { const c = find(base, "Cluster"); obj(c.metadata, "metadata").labelz = {}; return c; },
      error: /unknown field "labelz"/,
    },
  ];
  for (const m of mutations) {
    it(`rejects: ${m.name}`, async () => {
      const v = await validateObject(m.obj());
      expect(v.errors.join("\n")).toMatch(m.error);
    });
  }

  it("accepts the unmodified objects", async () => {
    for (const o of [...base, ...istio, ...linkerd]) expect((await validateObject(o)).errors).toEqual([]);
  });

  it("reads a Go (?i) CRD pattern as case-insensitive, as the API server does", async () => {
    const r = find(istio, "PrometheusRule");
    firstRuleGroup(r).partial_response_strategy = "ABORT";
    expect((await validateObject(r)).errors).toEqual([]);
  });

  it("reads YAML as helm/kubectl do (1.1 booleans, duplicate keys are errors)", async () => {
    const [cm] = parseManifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {flag: no}\n");
    expect(at(cm, "data", "flag")).toBe(false);
    expect((await validateObject(cm!)).errors.join("\n")).toMatch(/flag|string/);
    expect(() => parseManifest("a: 1\na: 2\n")).toThrow();
  });

  it("throws for a kind it has no schema for", async () => {
    await expect(validateObject({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } })).rejects.toThrow(/no schema/);
  });
});

describe("invariant checks catch mistakes", () => {
  const base = render();
  const exp = {
    namespace: "orderflow",
    mesh: "none" as const,
    externalSecrets: [],
    externalPodLabels: [{ "app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "orderflow" }],
    externalServiceHosts: ["orderflow-nats"],
    externalUrls: [],
  };
  const withChange = (kind: string, name: string, f: (o: K8sObject) => void): K8sObject[] =>
    base.map((o) => {
      if (o.kind !== kind || o.metadata.name !== name) return o;
      const c = clone(o);
      f(c);
      return c;
    });

  it("passes on the real render", () => expect(checkInvariants(base, exp)).toEqual([]));
  it("flags a missing probe", () => {
    const objs = withChange("Deployment", "orderflow-order", (d) => delete firstContainer(d).livenessProbe);
    expect(checkInvariants(objs, exp).join("\n")).toMatch(/liveness probes required/);
    const overall = withChange("Deployment", "orderflow-order", (d) => delete obj(at(firstContainer(d), "livenessProbe", "grpc"), "gRPC probe").service);
    expect(checkInvariants(overall, exp).join("\n")).toMatch(/must ask the "liveness" health entry/);
  });
  it("flags a writable root filesystem", () => {
    const objs = withChange("Deployment", "orderflow-fraud", (d) => (obj(firstContainer(d).securityContext, "securityContext").readOnlyRootFilesystem = false));
    expect(checkInvariants(objs, exp).join("\n")).toMatch(/readOnlyRootFilesystem/);
  });
  it("flags a PDB selecting nothing", () => {
    const objs = withChange("PodDisruptionBudget", "orderflow-payment", (p) => (obj(at(p.spec, "selector", "matchLabels"), "matchLabels")["app.kubernetes.io/component"] = "paymnt"));
    expect(checkInvariants(objs, exp).join("\n")).toMatch(/selects no rendered pods/);
  });
  it("flags an HPA targeting a missing Deployment", () => {
    const objs = withChange("HorizontalPodAutoscaler", "orderflow-order", (h) => (obj(at(h.spec, "scaleTargetRef"), "scaleTargetRef").name = "orderflow-ordr"));
    expect(checkInvariants(objs, exp).join("\n")).toMatch(/scaleTargetRef/);
  });
  it("flags an env URL pointing at a Service the render does not create", () => {
    const objs = withChange("Deployment", "orderflow-order", (d) => {
      const e = objArr(firstContainer(d).env, "env").find((x) => x.name === "INVENTORY_URL");
      obj(e, "INVENTORY_URL").value = "http://orderflow-stock.orderflow.svc:8080";
    });
    expect(checkInvariants(objs, exp).join("\n")).toMatch(/does not create/);
  });
  it("flags a Secret that nothing provides", () => {
    const objs = withChange("Deployment", "orderflow-order", (d) => {
      const e = objArr(firstContainer(d).env, "env").find((x) => x.name === "DATABASE_URL");
      obj(at(e, "valueFrom", "secretKeyRef"), "DATABASE_URL secretKeyRef").name = "orderflow-db";
    });
    expect(checkInvariants(objs, exp).join("\n")).toMatch(/Secret orderflow-db/);
  });
  it("flags the wrong appProtocol for the mesh", () => {
    expect(checkInvariants(base, { ...exp, mesh: "istio" }).join("\n")).toMatch(/appProtocol/);
  });
});
