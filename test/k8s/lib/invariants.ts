// Cross-object checks a reviewer would make on a rendered release.
import { arr, arrOr, at, obj, objArr, objArrOr, objOr, str, strMapOr, type Json, type JsonObject } from "./json.js";
import type { K8sObject } from "./validate.js";

type Labels = Record<string, string>;

export interface Expectations {
  namespace: string;
  mesh: "none" | "istio" | "linkerd";
  /** Names of objects the render does not contain but that exist at runtime. */
  externalSecrets: string[];
  /** Secret names created by an operator from a rendered object (CNPG <cluster>-app). */
  /** Label sets of pods created by subcharts/operators (NATS, CNPG) that selectors may target. */
  externalPodLabels: Labels[];
  /** Host names (Service names) provided outside the render (NATS subchart). */
  externalServiceHosts: string[];
  /** URLs that must appear verbatim (external backends). */
  externalUrls: string[];
}

export const SERVICES = ["order", "inventory", "fraud", "payment", "notification"] as const;

const matches = (selector: Labels | undefined, labels: Labels | undefined): boolean =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Full LabelSelector semantics (matchLabels AND matchExpressions); an empty selector is refused here. */
function selectorMatches(sel: Json | undefined, labels: Labels): boolean {
  if (!sel) return false;
  const ml: Labels = strMapOr(at(sel, "matchLabels"), "matchLabels");
  const exprs = objArrOr(at(sel, "matchExpressions"), "matchExpressions");
  if (Object.keys(ml).length === 0 && exprs.length === 0) return false;
  if (!Object.entries(ml).every(([k, v]) => labels[k] === v)) return false;
  return exprs.every((e) => {
    const key = str(e.key, "matchExpressions key");
    const has = key in labels;
    const values = () => arr(e.values, "matchExpressions values");
    switch (e.operator) {
      case "In": return has && values().includes(labels[key]!);
      case "NotIn": return !has || !values().includes(labels[key]!);
      case "Exists": return has;
      case "DoesNotExist": return !has;
      default: return false;
    }
  });
}

function podTemplates(objs: K8sObject[]): { owner: K8sObject; labels: Labels; spec: JsonObject }[] {
  const out: { owner: K8sObject; labels: Labels; spec: JsonObject }[] = [];
  for (const o of objs) {
    if (o.kind === "Deployment" || o.kind === "StatefulSet" || o.kind === "Job") {
      const where = `${o.kind}/${o.metadata.name}`;
      const t = obj(at(o.spec, "template"), `${where} spec.template`);
      out.push({ owner: o, labels: strMapOr(at(t, "metadata", "labels"), `${where} pod labels`), spec: obj(t.spec, `${where} pod spec`) });
    }
  }
  return out;
}

function hostOf(url: string): { host: string; port: string } {
  const u = new URL(url);
  return { host: u.hostname, port: u.port };
}

/** Returns a list of human-readable violations (empty = all good). */
export function checkInvariants(objs: K8sObject[], exp: Expectations): string[] {
  const errs: string[] = [];
  const byKind = (k: string) => objs.filter((o) => o.kind === k);
  const id = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;
  const pods = podTemplates(objs);
  const deployments = byKind("Deployment");
  const services = byKind("Service");
  const serviceNames = new Set(services.map((s) => s.metadata.name));
  const saNames = new Set(byKind("ServiceAccount").map((s) => s.metadata.name));
  const secretNames = new Set([...byKind("Secret").map((s) => s.metadata.name), ...exp.externalSecrets]);
  for (const c of byKind("Cluster")) secretNames.add(`${c.metadata.name}-app`);
  const cnpgServices = new Set<string>();
  for (const c of byKind("Cluster")) for (const s of ["rw", "ro", "r"]) cnpgServices.add(`${c.metadata.name}-${s}`);
  const podLabelSets = [...pods.filter((p) => p.owner.kind !== "Job").map((p) => p.labels), ...exp.externalPodLabels];
  for (const c of byKind("Cluster")) podLabelSets.push({ "cnpg.io/cluster": c.metadata.name });
  const selectsSomething = (sel: Json | undefined) => podLabelSets.some((l) => matches(strMapOr(sel, "selector"), l));

  // Unique names per kind, namespace set.
  const seen = new Set<string>();
  for (const o of objs) {
    if (seen.has(id(o))) errs.push(`duplicate ${id(o)}`);
    seen.add(id(o));
    if (o.kind !== "Namespace" && o.metadata.namespace !== exp.namespace) errs.push(`${id(o)}: namespace ${o.metadata.namespace} != ${exp.namespace}`);
  }

  // Workloads: probes, resources, restricted securityContext, env.
  for (const { owner, spec, labels } of pods) {
    const psc = objOr(spec.securityContext, `${id(owner)} pod securityContext`);
    if (spec.serviceAccountName && !saNames.has(str(spec.serviceAccountName, `${id(owner)} serviceAccountName`))) errs.push(`${id(owner)}: serviceAccount ${spec.serviceAccountName} not rendered`);
    if (at(psc, "seccompProfile", "type") !== "RuntimeDefault") errs.push(`${id(owner)}: pod seccompProfile is not RuntimeDefault`);
    if (spec.hostNetwork || spec.hostPID || spec.hostIPC) errs.push(`${id(owner)}: host namespaces used`);
    const initContainers = objArrOr(spec.initContainers, `${id(owner)} initContainers`);
    const containers = [...initContainers, ...objArrOr(spec.containers, `${id(owner)} containers`)];
    const isInit = (c: JsonObject) => initContainers.includes(c);
    const volumes = objArrOr(spec.volumes, `${id(owner)} volumes`);
    for (const c of containers) {
      const where = `${id(owner)} container ${c.name}`;
      const sc = objOr(c.securityContext, `${where} securityContext`);
      if (!(sc.runAsNonRoot ?? psc.runAsNonRoot)) errs.push(`${where}: runAsNonRoot not set`);
      if ((sc.runAsUser ?? psc.runAsUser) === 0) errs.push(`${where}: runs as UID 0`);
      if (sc.allowPrivilegeEscalation !== false) errs.push(`${where}: allowPrivilegeEscalation not false`);
      if (sc.readOnlyRootFilesystem !== true) errs.push(`${where}: readOnlyRootFilesystem not true`);
      if (sc.privileged) errs.push(`${where}: privileged`);
      if (!arrOr(at(sc, "capabilities", "drop"), `${where} capabilities.drop`).includes("ALL")) errs.push(`${where}: capabilities not dropped (ALL)`);
      if (arrOr(at(sc, "capabilities", "add"), `${where} capabilities.add`).length) errs.push(`${where}: adds capabilities`);
      if ((at(sc, "seccompProfile", "type") ?? at(psc, "seccompProfile", "type")) !== "RuntimeDefault") errs.push(`${where}: seccomp not RuntimeDefault`);
      if (!at(c, "resources", "requests", "cpu") || !at(c, "resources", "requests", "memory") || !at(c, "resources", "limits", "memory")) errs.push(`${where}: resources.requests.cpu/memory and limits.memory required`);
      if (owner.kind === "Deployment" && !isInit(c)) {
        if (!c.readinessProbe || !c.livenessProbe) errs.push(`${where}: readiness and liveness probes required`);
        // services/platform/rpc/health.ts: the overall status follows Postgres and NATS, "liveness" only the process.
        if (at(c, "livenessProbe", "grpc") !== undefined && at(c, "livenessProbe", "grpc", "service") !== "liveness") errs.push(`${where}: gRPC liveness probe must ask the "liveness" health entry, or an outage of a dependency restarts the pod`);
      }
      // Volumes mounted exist.
      for (const m of objArrOr(c.volumeMounts, `${where} volumeMounts`)) if (!volumes.some((v) => v.name === m.name)) errs.push(`${where}: volumeMount ${m.name} has no volume`);
      // Env: unique names, $(VAR) refers to an earlier var, secrets exist.
      const names: string[] = [];
      for (const e of objArrOr(c.env, `${where} env`)) {
        const name = str(e.name, `${where} env name`);
        if (names.includes(name)) errs.push(`${where}: duplicate env ${name}`);
        const value = e.value;
        if (typeof value === "string") {
          for (const m of value.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) if (!names.includes(m[1]!)) errs.push(`${where}: env ${name} refers to $(${m[1]}) defined later or not at all`);
        }
        const ref = at(e, "valueFrom", "secretKeyRef");
        if (ref) {
          const secret = str(at(ref, "name"), `${where} env ${name} secretKeyRef.name`);
          if (!secretNames.has(secret)) errs.push(`${where}: env ${name} reads Secret ${secret}, which neither the render nor the configuration provides`);
        }
        names.push(name);
      }
    }
    // OrderFlow service containers: gRPC probes on the gRPC port, env wiring.
    const component = labels["app.kubernetes.io/component"] ?? "";
    if ((SERVICES as readonly string[]).includes(component) && owner.kind === "Deployment") {
      const c = obj(arr(spec.containers, `${id(owner)} containers`)[0], `${id(owner)} first container`);
      const grpcPort = objArrOr(c.ports, `${id(owner)} container ports`).find((p) => p.name === "grpc")?.containerPort;
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        if (c[probe] && at(c[probe], "grpc", "port") !== grpcPort) errs.push(`${id(owner)}: ${probe} is not a native gRPC probe on the gRPC port`);
      }
      const env: Record<string, JsonObject> = Object.fromEntries(objArrOr(c.env, `${id(owner)} env`).map((e) => [str(e.name, `${id(owner)} env name`), e]));
      if (!env.NATS_URL) errs.push(`${id(owner)}: NATS_URL missing`);
      for (const [k, e] of Object.entries(env)) {
        const value = e.value;
        if (!k.endsWith("_URL") || k.startsWith("OTEL_") || typeof value !== "string") continue;
        if (exp.externalUrls.includes(value)) continue;
        if (/\$\(/.test(value)) {
          // DATABASE_READ_URL built from the CNPG secret: host must be <cluster>-r (every instance).
          const host = /@([^:/]+)/.exec(value)?.[1]?.split(".")[0] ?? "";
          if (!cnpgServices.has(host) || !host.endsWith("-r")) errs.push(`${id(owner)}: ${k} host ${host} is not the CNPG -r service of this release`);
          continue;
        }
        const { host, port } = hostOf(value);
        const [svcName, ns] = host.split(".");
        if (ns && ns !== exp.namespace) errs.push(`${id(owner)}: ${k} points at namespace ${ns}`);
        const target = services.find((s) => s.metadata.name === svcName);
        if (target) {
          const ports = arr(at(target.spec, "ports"), `${id(target)} ports`).map((p) => String(at(p, "port")));
          if (port && !ports.includes(port)) errs.push(`${id(owner)}: ${k} port ${port} not exposed by Service ${svcName}`);
        } else if (!exp.externalServiceHosts.includes(svcName!)) {
          errs.push(`${id(owner)}: ${k}=${value} points at Service ${svcName}, which the render does not create`);
        }
      }
      if (exp.mesh === "istio" && owner.kind === "Deployment" && labels["sidecar.istio.io/inject"] !== "true") errs.push(`${id(owner)}: istio injection label missing`);
      const ann = objOr(at(obj(at(owner.spec, "template"), `${id(owner)} spec.template`), "metadata", "annotations"), `${id(owner)} pod annotations`);
      if (exp.mesh === "linkerd" && ann["linkerd.io/inject"] !== "enabled") errs.push(`${id(owner)}: linkerd injection annotation missing`);
      if (exp.mesh === "none" && (labels["sidecar.istio.io/inject"] === "true" || ann["linkerd.io/inject"] === "enabled")) errs.push(`${id(owner)}: mesh injection without a mesh`);
      // Backends outside the mesh, NATS speaking first and the migrate init
      // container (runs before the proxy) need their ports to bypass the proxy.
      const bypass = exp.mesh === "istio" ? ann["traffic.sidecar.istio.io/excludeOutboundPorts"] : exp.mesh === "linkerd" ? ann["config.linkerd.io/skip-outbound-ports"] : undefined;
      if (exp.mesh !== "none") {
        const ports = String(bypass ?? "").split(",");
        const need = ["4222", ...(initContainers.length ? ["5432"] : [])];
        for (const p of need) if (!ports.includes(p)) errs.push(`${id(owner)}: outbound port ${p} must bypass the ${exp.mesh} proxy`);
      }
    }
  }

  // Deployments' own selectors match their templates.
  for (const d of deployments) {
    const sel = strMapOr(at(d.spec, "selector", "matchLabels"), `${id(d)} selector`);
    const template = obj(at(d.spec, "template"), `${id(d)} spec.template`);
    if (!matches(sel, strMapOr(at(template, "metadata", "labels"), `${id(d)} pod labels`))) errs.push(`${id(d)}: selector does not match its pod template`);
  }

  // HPA targets an existing Deployment; that Deployment leaves replicas to it.
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const spec = obj(h.spec, `${id(h)} spec`);
    const targetName = at(spec, "scaleTargetRef", "name");
    const target = deployments.find((d) => d.metadata.name === targetName && at(spec, "scaleTargetRef", "kind") === "Deployment");
    if (!target) errs.push(`${id(h)}: scaleTargetRef ${targetName} is not a rendered Deployment`);
    else if (at(target.spec, "replicas") !== undefined) errs.push(`${id(h)}: Deployment ${target.metadata.name} sets replicas although an HPA scales it`);
    const min = spec.minReplicas;
    const max = spec.maxReplicas;
    if (typeof min === "number" && typeof max === "number" && min > max) errs.push(`${id(h)}: minReplicas > maxReplicas`);
    const names = arr(spec.metrics, `${id(h)} metrics`).map((m) => at(m, "resource", "name")).sort().join(",");
    if (names !== "cpu" && names !== "cpu,memory") errs.push(`${id(h)}: expected a cpu target (and at most a memory one), got ${names}`);
  }

  // PDB / Service / NetworkPolicy select existing pods.
  for (const p of byKind("PodDisruptionBudget")) if (!selectsSomething(at(p.spec, "selector", "matchLabels"))) errs.push(`${id(p)}: selects no rendered pods`);
  for (const s of services) {
    const spec = obj(s.spec, `${id(s)} spec`);
    const selector = strMapOr(spec.selector, `${id(s)} selector`);
    const selected = pods.filter((p) => matches(selector, p.labels) && p.owner.kind !== "Job");
    if (selected.length === 0) {
      errs.push(`${id(s)}: selects no rendered pods`);
      continue;
    }
    const ports = objArr(spec.ports, `${id(s)} ports`);
    for (const port of ports) {
      if (typeof port.targetPort === "string") {
        for (const p of selected) {
          const has = objArr(p.spec.containers, `${id(p.owner)} containers`).some((c) => objArrOr(c.ports).some((cp) => cp.name === port.targetPort));
          if (!has) errs.push(`${id(s)}: targetPort ${port.targetPort} not a container port of ${id(p.owner)}`);
        }
      }
    }
    const isApp = (SERVICES as readonly string[]).includes(s.metadata.labels?.["app.kubernetes.io/component"] ?? "");
    if (isApp) {
      const grpc = ports.find((p) => p.name === "grpc");
      if (!grpc) errs.push(`${id(s)}: no port named grpc`);
      const want = exp.mesh === "istio" ? "grpc" : "kubernetes.io/h2c";
      if (grpc && grpc.appProtocol !== want) errs.push(`${id(s)}: grpc appProtocol ${grpc.appProtocol}, want ${want} for mesh ${exp.mesh}`);
    }
  }
  for (const np of byKind("NetworkPolicy")) {
    const spec = obj(np.spec, `${id(np)} spec`);
    if (!selectsSomething(at(spec, "podSelector", "matchLabels"))) errs.push(`${id(np)}: podSelector selects no rendered pods`);
    const ingress = objArrOr(spec.ingress, `${id(np)} ingress`);
    const egress = objArrOr(spec.egress, `${id(np)} egress`);
    const peers = objArrOr([...ingress.flatMap((r) => arrOr(r.from, `${id(np)} ingress from`)), ...egress.flatMap((r) => arrOr(r.to, `${id(np)} egress to`))], `${id(np)} peers`);
    for (const rule of ingress) if (rule.from === null || (Array.isArray(rule.from) && rule.from.length === 0)) errs.push(`${id(np)}: ingress rule with empty from (allows everyone)`);
    for (const peer of peers) {
      if (peer.podSelector && !peer.namespaceSelector && !podLabelSets.some((l) => selectorMatches(peer.podSelector, l))) errs.push(`${id(np)}: peer podSelector ${JSON.stringify(peer.podSelector)} selects no pods of this release`);
    }
  }

  // ServiceMonitor endpoints name a port of a selected Service.
  for (const sm of byKind("ServiceMonitor")) {
    const spec = obj(sm.spec, `${id(sm)} spec`);
    const sel = strMapOr(at(spec, "selector", "matchLabels"), `${id(sm)} selector`);
    const svc = services.filter((s) => matches(sel, s.metadata.labels));
    if (svc.length === 0) errs.push(`${id(sm)}: selects no Service`);
    for (const ep of objArr(spec.endpoints, `${id(sm)} endpoints`)) for (const s of svc) if (!arr(at(s.spec, "ports"), `${id(s)} ports`).some((p) => at(p, "name") === ep.port)) errs.push(`${id(sm)}: Service ${s.metadata.name} has no port ${ep.port}`);
  }

  // Istio.
  for (const o of objs.filter((x) => x.apiVersion.endsWith(".istio.io/v1"))) {
    const spec = obj(o.spec, `${id(o)} spec`);
    if (spec.selector && !selectsSomething(at(spec.selector, "matchLabels"))) errs.push(`${id(o)}: selector matches no rendered pods`);
    if (o.kind === "PeerAuthentication" && at(spec, "mtls", "mode") !== "STRICT") errs.push(`${id(o)}: mTLS not STRICT`);
    if (o.kind === "DestinationRule") {
      const short = String(spec.host).split(".")[0]!;
      if (!serviceNames.has(short)) errs.push(`${id(o)}: host ${spec.host} is not a rendered Service`);
    }
    if (o.kind === "AuthorizationPolicy") {
      for (const rule of objArrOr(spec.rules, `${id(o)} rules`)) for (const from of objArrOr(rule.from, `${id(o)} rule from`)) for (const principal of arrOr(at(from, "source", "principals"), `${id(o)} principals`)) {
        const p = str(principal, `${id(o)} principal`);
        const m = /^cluster\.local\/ns\/([^/]+)\/sa\/(.+)$/.exec(p);
        if (m && m[1] === exp.namespace && !saNames.has(m[2]!)) errs.push(`${id(o)}: principal ${p} names a ServiceAccount not rendered`);
      }
    }
  }
  if (exp.mesh === "istio") {
    for (const svc of SERVICES) {
      const d = deployments.find((x) => x.metadata.labels?.["app.kubernetes.io/component"] === svc);
      if (!d) continue;
      for (const k of ["PeerAuthentication", "AuthorizationPolicy", "DestinationRule"]) if (!objs.some((o) => o.kind === k && o.metadata.name === d.metadata.name)) errs.push(`istio: ${k} for ${svc} missing`);
    }
  }

  // Linkerd policy references.
  const linkerd = objs.filter((x) => x.apiVersion.startsWith("policy.linkerd.io/"));
  const lk = (kind: Json | undefined, name: Json | undefined) => linkerd.some((o) => o.kind === kind && o.metadata.name === name);
  for (const o of linkerd) {
    const spec = obj(o.spec, `${id(o)} spec`);
    if (o.kind === "Server") {
      const podSel = strMapOr(at(spec, "podSelector", "matchLabels"), `${id(o)} podSelector`);
      const sel = pods.filter((p) => matches(podSel, p.labels));
      if (sel.length === 0) errs.push(`${id(o)}: podSelector matches no rendered pods`);
      for (const p of sel) if (typeof spec.port === "string" && !objArr(p.spec.containers, `${id(p.owner)} containers`).some((c) => objArrOr(c.ports).some((cp) => cp.name === spec.port))) errs.push(`${id(o)}: port ${spec.port} not on ${id(p.owner)}`);
    }
    if (o.kind === "HTTPRoute") for (const r of objArrOr(spec.parentRefs, `${id(o)} parentRefs`)) if (!lk(r.kind, r.name)) errs.push(`${id(o)}: parentRef ${r.kind}/${r.name} missing`);
    if (o.kind === "AuthorizationPolicy") {
      const targetRef = obj(spec.targetRef, `${id(o)} targetRef`);
      if (!lk(targetRef.kind, targetRef.name)) errs.push(`${id(o)}: targetRef ${targetRef.kind}/${targetRef.name} missing`);
      for (const r of objArrOr(spec.requiredAuthenticationRefs, `${id(o)} requiredAuthenticationRefs`)) if (!lk(r.kind, r.name)) errs.push(`${id(o)}: authentication ${r.kind}/${r.name} missing`);
    }
    if (o.kind === "MeshTLSAuthentication") for (const r of objArrOr(spec.identityRefs, `${id(o)} identityRefs`)) if (r.kind === "ServiceAccount" && !saNames.has(str(r.name, `${id(o)} identityRefs name`))) errs.push(`${id(o)}: ServiceAccount ${r.name} not rendered`);
  }
  if (exp.mesh === "linkerd") {
    const targetName = (o: K8sObject) => str(at(o.spec, "targetRef", "name"), `${id(o)} targetRef.name`);
    for (const svc of SERVICES) {
      const d = deployments.find((x) => x.metadata.labels?.["app.kubernetes.io/component"] === svc);
      if (!d) continue;
      if (!lk("Server", `${d.metadata.name}-grpc`)) errs.push(`linkerd: Server for ${svc} missing`);
      const routes = linkerd.filter((o) => o.kind === "HTTPRoute" && arr(at(o.spec, "parentRefs"), `${id(o)} parentRefs`).some((r) => at(r, "name") === `${d.metadata.name}-grpc`)).map((o) => o.metadata.name);
      const authorized = linkerd.filter((o) => o.kind === "AuthorizationPolicy" && routes.includes(targetName(o)));
      if (!authorized.some((a) => targetName(a).endsWith("-health"))) errs.push(`linkerd: ${svc} health route (kubelet gRPC probes) not authorized`);
    }
  }
  if (exp.mesh !== "istio" && objs.some((o) => o.apiVersion.includes(".istio.io/"))) errs.push(`Istio objects rendered with mesh ${exp.mesh}`);
  if (exp.mesh !== "linkerd" && linkerd.length) errs.push(`Linkerd objects rendered with mesh ${exp.mesh}`);
  return errs;
}
