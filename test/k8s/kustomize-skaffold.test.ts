// k8s/ kustomizations build with `kubectl kustomize` and validate; the kind
// cluster config is well-formed; skaffold.yaml (and each profile) validates
// against skaffold's published JSON schema and points at things that exist.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { Ajv } from "ajv";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { arr, arrOr, at, num, obj, objArr, objArrOr, objOr, str, type Json, type JsonObject } from "./lib/json.js";
import { K8S_TEST_DIR, REPO_ROOT, renderChart } from "./lib/renderer.js";
import { nameErrors, parseManifest, validateObject, type K8sObject } from "./lib/validate.js";

const K8S_DIR = join(REPO_ROOT, "k8s");

function kustomizations(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...kustomizations(p));
    else if (e === "kustomization.yaml" || e === "kustomization.yml") out.push(dir);
  }
  return out;
}

function kustomize(dir: string): K8sObject[] {
  const r = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
  if (r.error) throw new Error("kubectl is needed to build k8s/ (kubectl kustomize); install kubectl");
  if (r.status !== 0) throw new Error(`kubectl kustomize ${relative(REPO_ROOT, dir)} failed:\n${r.stderr}`);
  return parseManifest(r.stdout);
}

describe("k8s/ kustomizations", () => {
  const dirs = kustomizations(K8S_DIR);

  it("finds the base, both meshes and the examples", () => {
    const rel = dirs.map((d) => relative(K8S_DIR, d)).sort();
    expect(rel).toEqual(expect.arrayContaining(["base", "mesh/istio", "mesh/linkerd", "examples/kind-dev", "examples/istio-ingress"]));
  });

  for (const dir of dirs) {
    const name = relative(K8S_DIR, dir);
    it(`builds and validates: ${name}`, async () => {
      const objs = kustomize(dir);
      expect(objs.length).toBeGreaterThan(0);
      const problems: string[] = [];
      for (const o of objs) {
        const v = await validateObject(o);
        for (const e of [...v.errors, ...nameErrors(o)]) problems.push(`${o.kind}/${o.metadata.name}: ${e}`);
      }
      expect(problems, problems.join("\n")).toEqual([]);
      const ns = objs.find((o) => o.kind === "Namespace" && o.metadata.name === "orderflow");
      expect(ns, "every kustomization sets up the orderflow namespace").toBeDefined();
      const labels = ns!.metadata.labels ?? {};
      const annotations = ns!.metadata.annotations ?? {};
      expect(labels["pod-security.kubernetes.io/enforce"]).toBeDefined();
      if (name.includes("istio")) {
        expect(labels["istio-injection"]).toBe("enabled");
        const pa = objs.find((o) => o.kind === "PeerAuthentication");
        expect(at(pa?.spec, "mtls", "mode")).toBe("STRICT");
        expect(pa?.metadata.namespace, "mesh-wide: the Istio root namespace").toBe("istio-system");
        const deny = objs.find((o) => o.kind === "AuthorizationPolicy" && o.metadata.name === "allow-nothing");
        expect(deny, "deny-by-default AuthorizationPolicy").toBeDefined();
      } else if (name.includes("linkerd")) {
        expect(annotations["linkerd.io/inject"]).toBe("enabled");
        expect(annotations["config.linkerd.io/default-inbound-policy"]).toBe("all-authenticated");
      } else {
        expect(labels["istio-injection"]).toBeUndefined();
        expect(annotations["linkerd.io/inject"]).toBeUndefined();
      }
    });
  }

  it("istio-ingress example routes to Services the chart creates", () => {
    const objs = kustomize(join(K8S_DIR, "examples/istio-ingress"));
    const r = renderChart({ values: { mesh: "istio" } });
    expect(r.ok, r.stderr).toBe(true);
    const services = new Set(parseManifest(r.manifest).filter((o) => o.kind === "Service").map((o) => `${o.metadata.name}.${o.metadata.namespace}.svc.cluster.local`));
    const vs = objs.find((o) => o.kind === "VirtualService")!;
    for (const route of objArr(at(vs.spec, "http"), "VirtualService http")) {
      for (const d of objArr(route.route, "VirtualService route")) {
        const host = str(at(d, "destination", "host"), "route destination host");
        expect(services.has(host), host).toBe(true);
      }
    }
  });

  it("kind cluster config is well-formed", () => {
    const cfg = obj(parse(readFileSync(join(K8S_DIR, "kind/cluster.yaml"), "utf8")), "kind/cluster.yaml");
    expect(cfg.apiVersion).toBe("kind.x-k8s.io/v1alpha4");
    expect(cfg.kind).toBe("Cluster");
    const roles = objArr(cfg.nodes, "nodes").map((n) => n.role);
    expect(roles.filter((r) => r === "control-plane").length).toBeGreaterThanOrEqual(1);
    expect(roles.filter((r) => r === "worker").length, "workers for PDBs and 3 Postgres instances").toBeGreaterThanOrEqual(2);
    for (const n of objArr(cfg.nodes, "nodes")) for (const k of Object.keys(n)) expect(["role", "image", "labels", "extraPortMappings", "extraMounts", "kubeadmConfigPatches"]).toContain(k);
    for (const k of Object.keys(cfg)) expect(["kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig", "kubeadmConfigPatches", "containerdConfigPatches"]).toContain(k);
  });
});

describe("skaffold.yaml", () => {
  const schema = obj(JSON.parse(readFileSync(join(K8S_TEST_DIR, "schemas/skaffold-v4beta14.json"), "utf8")), "skaffold schema");
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const validate = ajv.compile(schema);
  const config = obj(parse(readFileSync(join(REPO_ROOT, "skaffold.yaml"), "utf8"), { uniqueKeys: true }), "skaffold.yaml");

  /** A JSON-patch target: an object, or an array indexed by its position. */
  type PatchTarget = JsonObject | Json[];
  const node = (v: Json | undefined, what: string): PatchTarget => (Array.isArray(v) ? v : obj(v, what));
  const child = (n: PatchTarget, seg: string): Json | undefined => (Array.isArray(n) ? n[Number(seg)] : n[seg]);

  function applyPatches(doc: JsonObject, patches: JsonObject[]): JsonObject {
    const out = obj(JSON.parse(JSON.stringify(doc)), "document");
    for (const p of patches) {
      const path = str(p.path, "patch path").split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
      let cur: PatchTarget = out;
      for (const seg of path.slice(0, -1)) {
        if (!(seg in cur)) throw new Error(`patch path ${p.path} does not exist`);
        cur = node(child(cur, seg), `patch path ${p.path} at ${seg}`);
      }
      const last = path.at(-1)!;
      if (p.op === "replace" && !(last in cur)) throw new Error(`replace: ${p.path} does not exist`);
      if (p.op === "add" || p.op === "replace") {
        const value = p.value;
        if (value === undefined) throw new Error(`${p.op}: ${p.path} has no value`);
        if (Array.isArray(cur)) cur[Number(last)] = value;
        else cur[last] = value;
      } else if (p.op === "remove") {
        if (Array.isArray(cur)) delete cur[Number(last)];
        else delete cur[last];
      } else throw new Error(`unsupported op ${p.op}`);
    }
    return out;
  }

  it("uses the newest schema version and validates against it", () => {
    expect(config.apiVersion).toBe("skaffold/v4beta14");
    const ok = validate(config);
    expect(ok, JSON.stringify(validate.errors, null, 2)).toBe(true);
  });

  it("has istio and linkerd profiles that validate and switch the mesh and the namespace setup", () => {
    const profiles = objArr(config.profiles, "profiles").map((p) => p.name);
    expect(profiles).toEqual(expect.arrayContaining(["istio", "linkerd"]));
    for (const p of objArr(config.profiles, "profiles")) {
      const effective = applyPatches(config, objArrOr(p.patches, "patches"));
      delete effective.profiles;
      expect(validate(effective), `${p.name}: ${JSON.stringify(validate.errors)}`).toBe(true);
      const rel = obj(at(effective, "deploy", "helm", "releases", 0), "helm release");
      expect(obj(rel.setValues, "setValues").mesh).toBe(p.name);
      const hook = arr(at(effective, "deploy", "helm", "hooks", "before", 0, "host", "command"), "hook command");
      expect(hook.join(" ")).toBe(`kubectl apply -k k8s/mesh/${p.name}`);
    }
  });

  it("builds the image the chart deploys and deploys the chart with the built tag", () => {
    const artifacts = objArr(at(config, "build", "artifacts"), "build.artifacts");
    expect(artifacts.map((a) => a.image)).toEqual(["orderflow"]);
    expect(existsSync(join(REPO_ROOT, str(at(artifacts[0], "docker", "dockerfile"), "artifact dockerfile")))).toBe(true);
    const rel = obj(at(config, "deploy", "helm", "releases", 0), "helm release");
    expect(existsSync(join(REPO_ROOT, str(rel.chartPath, "chartPath"), "Chart.yaml"))).toBe(true);
    for (const f of arrOr(rel.valuesFiles, "valuesFiles").map((x) => str(x, "valuesFiles entry"))) expect(existsSync(join(REPO_ROOT, f)), f).toBe(true);
    const templates = obj(rel.setValueTemplates, "setValueTemplates");
    expect(templates["image.repository"]).toBe("{{.IMAGE_REPO_orderflow}}");
    expect(templates["image.tag"]).toMatch(/^\{\{\.IMAGE_TAG_orderflow\}\}/);
    for (const hook of objArr(at(config, "deploy", "helm", "hooks", "before"), "hooks.before")) {
      const cmd = arr(at(hook, "host", "command"), "hook command").map((x) => str(x, "hook command part"));
      if (cmd[0] === "kubectl" && cmd[2] === "-k") expect(existsSync(join(REPO_ROOT, cmd[3]!, "kustomization.yaml")), cmd[3]).toBe(true);
    }
  });

  it("port-forwards Services that the chart creates for that release", () => {
    const rel = obj(at(config, "deploy", "helm", "releases", 0), "helm release");
    const values = arr(rel.valuesFiles, "valuesFiles").map((f) => join(REPO_ROOT, str(f, "valuesFiles entry")));
    const r = renderChart({ valuesFiles: values, values: { ...objOr(rel.setValues, "setValues"), image: { repository: "orderflow", tag: "dev" } }, releaseName: str(rel.name, "release name"), namespace: str(rel.namespace, "release namespace") });
    expect(r.ok, r.stderr).toBe(true);
    const services = parseManifest(r.manifest).filter((o) => o.kind === "Service");
    const pf = objArr(config.portForward, "portForward");
    expect(pf.length).toBeGreaterThanOrEqual(5);
    const localPorts = new Set<number>();
    for (const f of pf) {
      expect(f.resourceType).toBe("service");
      const svc = services.find((s) => s.metadata.name === f.resourceName && s.metadata.namespace === f.namespace);
      expect(svc, `Service ${f.resourceName}`).toBeDefined();
      expect(arr(at(svc!.spec, "ports"), "Service ports").some((p) => at(p, "port") === f.port), `${f.resourceName}:${f.port}`).toBe(true);
      const localPort = num(f.localPort, "localPort");
      expect(localPorts.has(localPort), `local port ${localPort} used twice`).toBe(false);
      localPorts.add(localPort);
    }
    for (const s of ["order", "inventory", "fraud", "payment", "notification"]) expect(pf.some((f) => f.resourceName === `orderflow-${s}` && f.port === 8080), s).toBe(true);
  });
});
