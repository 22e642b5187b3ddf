// The environment the chart gives each service must satisfy that service's
// own configuration schema (services/<name>/config.ts, parsed with the same
// parseConfig the service runs at start), after Kubernetes has resolved
// secretKeyRef / fieldRef values and $(VAR) references the way the kubelet does.
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { at, obj, objArr, objArrOr, str, type JsonObject } from "./lib/json.js";
import { CHART_DIR, REPO_ROOT, renderChart } from "./lib/renderer.js";
import { parseManifest } from "./lib/validate.js";

const SERVICES = ["order", "inventory", "fraud", "payment", "notification"];
// Variables the chart sets for the runtime rather than the service's config.
const PLATFORM_VARS = /^(OTEL_|K8S_|NODE_ENV$|DB_USERNAME$|DB_PASSWORD$|DB_NAME$)/;

interface ConfigModule {
  parseConfig: (shape: Record<string, unknown>, env: Record<string, string>) => unknown;
  baseConfigShape: Record<string, unknown>;
}

async function configShape(service: string): Promise<Record<string, unknown>> {
  const mod = (await import(pathToFileURL(join(REPO_ROOT, "services", service, "config.ts")).href)) as Record<string, unknown>;
  const shape = Object.entries(mod).find(([k]) => k.endsWith("ConfigShape"))?.[1];
  if (!shape) throw new Error(`services/${service}/config.ts exports no *ConfigShape`);
  return shape as Record<string, unknown>;
}

/** Resolves a container's env like the kubelet, with stand-in Secret values. */
function resolveEnv(container: JsonObject, secrets: (name: string, key: string) => string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of objArr(container.env, "env")) {
    const name = str(e.name, "env name");
    const secretRef = at(e, "valueFrom", "secretKeyRef");
    const fieldRef = at(e, "valueFrom", "fieldRef");
    let v: string;
    if (typeof e.value === "string") v = e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m: string, n: string) => (n in env ? env[n]! : m));
    else if (secretRef) v = secrets(str(at(secretRef, "name"), `env ${name} secretKeyRef.name`), str(at(secretRef, "key"), `env ${name} secretKeyRef.key`));
    else if (fieldRef) v = at(fieldRef, "fieldPath") === "metadata.namespace" ? "orderflow" : "pod-0";
    else throw new Error(`env ${name}: unsupported source ${JSON.stringify(e)}`);
    env[name] = v;
  }
  return env;
}

const stubSecret = (name: string, key: string): string => {
  const values: Record<string, string> = {
    uri: `postgresql://orderflow:s3cret@${name.replace(/-app$/, "")}-rw.orderflow:5432/orderflow`,
    "read-uri": "postgresql://orderflow:s3cret@replica.example.internal:5432/orderflow",
    username: "orderflow",
    password: "s3cret",
    dbname: "orderflow",
    url: "redis://redis.example.internal:6379",
  };
  if (!(key in values)) throw new Error(`no stand-in for Secret ${name} key ${key}`);
  return values[key]!;
};

const COMBOS: { name: string; files: string[] }[] = [
  { name: "defaults", files: [] },
  { name: "dev", files: [join(CHART_DIR, "ci/dev-values.yaml")] },
  { name: "external backends", files: [join(CHART_DIR, "ci/external-values.yaml")] },
  { name: "istio + external, Redis from a Secret", files: [join(CHART_DIR, "ci/istio-external-values.yaml")] },
  { name: "linkerd, hook migrations", files: [join(CHART_DIR, "ci/linkerd-values.yaml")] },
];

describe("the chart's environment satisfies each service's config schema", () => {
  for (const combo of COMBOS) {
    it(combo.name, async () => {
      const platform = (await import(pathToFileURL(join(REPO_ROOT, "services/platform/config.ts")).href)) as ConfigModule;
      const r = renderChart({ valuesFiles: combo.files });
      expect(r.ok, r.stderr).toBe(true);
      const objs = parseManifest(r.manifest);
      for (const service of SERVICES) {
        const workloads = objs.filter(
          (o) => (o.kind === "Deployment" || o.kind === "Job") && o.metadata.labels?.["app.kubernetes.io/component"]?.replace(/-migrate$/, "") === service,
        );
        expect(workloads.length, `${service} workloads`).toBeGreaterThan(0);
        const shape = { ...platform.baseConfigShape, ...(await configShape(service)) };
        for (const w of workloads) {
          const spec = obj(at(w.spec, "template", "spec"), `${w.kind}/${w.metadata.name} pod spec`);
          for (const c of [...objArrOr(spec.initContainers, "initContainers"), ...objArr(spec.containers, "containers")]) {
            const env = resolveEnv(c, stubSecret);
            const where = `${w.kind}/${w.metadata.name} container ${c.name}`;
            expect(() => platform.parseConfig(shape, env), where).not.toThrow();
            const unread = Object.keys(env).filter((k) => !(k in shape) && !PLATFORM_VARS.test(k));
            expect(unread, `${where}: variables the service does not read`).toEqual([]);
            expect(env.PORT).toBe("8080");
          }
        }
      }
    });
  }
});
