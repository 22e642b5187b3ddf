// Schema validation of rendered Kubernetes objects, offline.
//
// - Built-in kinds: the validators `kubernetes-models` generates from the
//   Kubernetes OpenAPI spec (types, required fields, formats, enums).
//   Those validators accept unknown fields, which the API server rejects
//   under strict field validation (kubectl's default), so every object is
//   also checked for unknown fields: it is wrapped in proxies that record
//   which keys the validator reads; a key of a typed object that the
//   validator never looked at is not in the schema.
// - Istio kinds: the same, from `@kubernetes-models/istio` (generated from
//   Istio's CRDs).
// - Other custom resources (CloudNativePG, Linkerd policy, ServiceMonitor,
//   PrometheusRule):
//   the CRDs' openAPIV3Schema, vendored in test/k8s/schemas/crds, compiled with
//   ajv the way the API server applies a structural schema (unknown fields
//   are errors unless x-kubernetes-preserve-unknown-fields).
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Ajv, type ValidateFunction } from "ajv";
import { parseAllDocuments } from "yaml";
import { K8S_TEST_DIR } from "./renderer.js";

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

/**
 * Parses a multi-document YAML stream the way helm/kubectl read it: YAML 1.1
 * scalars (sigs.k8s.io/yaml on go-yaml v2, so an unquoted yes/no/on/off is a
 * boolean) and duplicate keys are errors.
 */
export function parseManifest(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text, { version: "1.1", uniqueKeys: true, prettyErrors: true })) {
    if (doc.errors.length) throw new Error(`YAML error: ${doc.errors.map((e) => e.message).join("; ")}`);
    const v = doc.toJS({ maxAliasCount: 100 });
    if (v === null || v === undefined) continue;
    out.push(v as K8sObject);
  }
  return out;
}

type CompiledValidator = ((data: unknown) => boolean) & { errors?: unknown[] | null };

const builtinCache = new Map<string, CompiledValidator | null>();

function packageDir(pkg: string): string {
  // Node's resolution walk (these packages export only an "import" entry,
  // so require.resolve cannot be used).
  for (let dir = K8S_TEST_DIR; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", pkg);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dirname(dir) === dir) throw new Error(`package ${pkg} is not installed (run npm ci)`);
  }
}

/** Finds the kubernetes-models validator module for apiVersion/kind, or null. */
async function modelValidator(apiVersion: string, kind: string): Promise<CompiledValidator | null> {
  const key = `${apiVersion}/${kind}`;
  if (builtinCache.has(key)) return builtinCache.get(key)!;
  const slash = apiVersion.indexOf("/");
  const group = slash >= 0 ? apiVersion.slice(0, slash) : "";
  const version = slash >= 0 ? apiVersion.slice(slash + 1) : apiVersion;
  const candidates: string[] = [];
  if (group.endsWith(".istio.io")) {
    candidates.push(join(packageDir("@kubernetes-models/istio"), group, version, `${kind}.js`));
  } else {
    const km = packageDir("kubernetes-models");
    candidates.push(group === "" ? join(km, version, `${kind}.js`) : join(km, group, version, `${kind}.js`));
  }
  let found: CompiledValidator | null = null;
  for (const file of candidates) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const m = /from"(\.\.\/\.\.\/_schemas\/\w+\.js|\.\.\/_schemas\/\w+\.js)"/.exec(text);
    if (!m) continue;
    const mod = (await import(pathToFileURL(join(dirname(file), m[1]!)).href)) as { validate: CompiledValidator };
    found = mod.validate;
  }
  builtinCache.set(key, found);
  return found;
}

interface Tracked {
  target: Record<string, unknown>;
  read: Set<string>;
  path: string;
}

function track(value: unknown, path: string, log: Tracked[]): unknown {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) {
    return value.map((v, i) => track(v, `${path}/${i}`, log));
  }
  const target: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) target[k] = track(v, `${path}/${k}`, log);
  const read = new Set<string>();
  log.push({ target, read, path });
  return new Proxy(target, {
    get(t, k, r) {
      if (typeof k === "string") read.add(k);
      return Reflect.get(t, k, r);
    },
  });
}

function formatAjvErrors(errors: unknown[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const err = e as { instancePath?: string; message?: string; keyword?: string; params?: unknown };
    return `${err.instancePath || "/"}: ${err.message ?? err.keyword} ${err.params ? JSON.stringify(err.params) : ""}`.trim();
  });
}

/** Validates with a kubernetes-models validator plus the unknown-field check. */
function runModelValidator(validate: CompiledValidator, obj: unknown): string[] {
  const log: Tracked[] = [];
  const proxied = track(obj, "", log);
  const ok = validate(proxied);
  const errors = ok ? [] : formatAjvErrors(validate.errors);
  for (const t of log) {
    // An object none of whose keys were looked at is free-form (a map the
    // schema leaves open, or x-kubernetes-preserve-unknown-fields).
    if (t.read.size === 0) continue;
    for (const k of Object.keys(t.target)) {
      if (!t.read.has(k)) errors.push(`${t.path || "/"}: unknown field "${k}"`);
    }
  }
  return errors;
}

// ---- CRDs ---------------------------------------------------------------

/**
 * CRD patterns are Go (RE2) regular expressions. One thing the vendored CRDs use
 * that JavaScript lacks: a leading inline flag, `(?i)` (PrometheusRule's
 * partial_response_strategy); it applies to the whole pattern, so it becomes the
 * RegExp's `i` flag. Any other Go-only syntax still fails to compile, loudly.
 */
const goRegExp = Object.assign(
  (pattern: string, flags: string): RegExp => {
    const m = /^(\^?)\(\?i\)/.exec(pattern);
    return m ? new RegExp(m[1] + pattern.slice(m[0].length), `${flags}i`) : new RegExp(pattern, flags);
  },
  { code: "goRegExp" },
);

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, code: { regExp: goRegExp } });
const crdValidators = new Map<string, ValidateFunction>();
let crdsLoaded = false;

type Schema = Record<string, unknown>;

/** Turns a CRD structural schema into a JSON Schema with API-server semantics. */
export function structuralToJsonSchema(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(structuralToJsonSchema);
  if (s === null || typeof s !== "object") return s;
  const src = s as Schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(src)) {
    if (k === "properties" || k === "patternProperties" || k === "definitions") {
      out[k] = Object.fromEntries(Object.entries(v as Schema).map(([pk, pv]) => [pk, structuralToJsonSchema(pv)]));
    } else if (k.startsWith("x-kubernetes-") || k === "nullable" || k === "description" || k === "default" || k === "example") {
      continue;
    } else {
      out[k] = structuralToJsonSchema(v);
    }
  }
  if (src["x-kubernetes-int-or-string"]) {
    delete out.type;
    out.anyOf = [{ type: "integer" }, { type: "string" }];
  }
  if (src.nullable && typeof out.type === "string") out.type = [out.type, "null"];
  const preserve = src["x-kubernetes-preserve-unknown-fields"] === true;
  if (out.type === "object" && !preserve && out.additionalProperties === undefined) {
    out.additionalProperties = false;
    if (out.properties === undefined) out.properties = {};
  }
  return out;
}

function loadCrds(): void {
  if (crdsLoaded) return;
  const dir = join(K8S_TEST_DIR, "schemas/crds");
  for (const f of readdirSync(dir)) {
    if (!f.endsWith(".yaml")) continue;
    for (const crd of parseManifest(readFileSync(join(dir, f), "utf8"))) {
      if (crd.kind !== "CustomResourceDefinition") continue;
      const spec = crd.spec as { group: string; names: { kind: string }; versions: { name: string; served: boolean; schema?: { openAPIV3Schema: Schema } }[] };
      for (const v of spec.versions) {
        if (!v.served || !v.schema) continue;
        const schema = structuralToJsonSchema(v.schema.openAPIV3Schema) as Schema;
        // metadata is validated separately (ObjectMeta); apiVersion/kind are known.
        const props = (schema.properties ?? {}) as Schema;
        props.metadata = { type: "object" };
        props.apiVersion = { type: "string" };
        props.kind = { type: "string" };
        schema.properties = props;
        crdValidators.set(`${spec.group}/${v.name}/${spec.names.kind}`, ajv.compile(schema));
      }
    }
  }
  crdsLoaded = true;
}

export function crdKinds(): string[] {
  loadCrds();
  return [...crdValidators.keys()];
}

export interface ValidationResult {
  source: "kubernetes-openapi" | "istio-crd" | "crd";
  errors: string[];
}

/** Validates one object; throws if no schema is known for its kind. */
export async function validateObject(obj: K8sObject): Promise<ValidationResult> {
  if (!obj || typeof obj !== "object" || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
    return { source: "kubernetes-openapi", errors: ["object has no apiVersion/kind"] };
  }
  const builtin = await modelValidator(obj.apiVersion, obj.kind);
  if (builtin) {
    const source = obj.apiVersion.includes(".istio.io/") ? "istio-crd" : "kubernetes-openapi";
    return { source, errors: runModelValidator(builtin, obj) };
  }
  loadCrds();
  const v = crdValidators.get(`${obj.apiVersion}/${obj.kind}`);
  if (!v) throw new Error(`no schema for ${obj.apiVersion} ${obj.kind} (${obj.metadata?.name})`);
  const errors = v(obj) ? [] : formatAjvErrors(v.errors);
  errors.push(...runModelValidator(await objectMetaValidator(), obj.metadata).map((e) => `/metadata${e}`));
  return { source: "crd", errors };
}

let objectMeta: CompiledValidator | null = null;
async function objectMetaValidator(): Promise<CompiledValidator> {
  if (objectMeta) return objectMeta;
  const file = join(packageDir("@kubernetes-models/apimachinery"), "_schemas/IoK8sApimachineryPkgApisMetaV1ObjectMeta.js");
  objectMeta = ((await import(pathToFileURL(file).href)) as { validate: CompiledValidator }).validate;
  return objectMeta;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Name rules the API server enforces beyond the schema. */
export function nameErrors(obj: K8sObject): string[] {
  const name = obj.metadata?.name ?? "";
  const errors: string[] = [];
  const labelKinds = new Set(["Service", "Namespace"]);
  if (labelKinds.has(obj.kind)) {
    if (!DNS1123_LABEL.test(name) || name.length > 63) errors.push(`${obj.kind} name "${name}" is not a DNS-1123 label (<= 63 chars)`);
  } else if (!DNS1123_SUBDOMAIN.test(name) || name.length > 253) {
    errors.push(`${obj.kind} name "${name}" is not a DNS-1123 subdomain`);
  }
  for (const [k, v] of Object.entries(obj.metadata?.labels ?? {})) {
    if (typeof v !== "string" || v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v)) errors.push(`label ${k}="${String(v)}" is not a valid label value`);
  }
  return errors;
}
