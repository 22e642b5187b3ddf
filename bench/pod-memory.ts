// The services' pod memory limits as the chart sets them by default, for
// `npm run bench -- --pod-memory`, which runs each service in a memory cgroup
// of that size (tools/memory-cgroup.ts).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";

const binarySuffixes: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const decimalSuffixes: Record<string, number> = { "": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** A Kubernetes memory quantity ("512Mi", "1Gi", "400M", "268435456") in bytes. */
export function memoryQuantityBytes(quantity: string | number): number {
  const match = /^(\d+(?:\.\d+)?)([KMGT]i|[kMGT])?$/.exec(String(quantity).trim());
  const scale = match ? (binarySuffixes[match[2] ?? ""] ?? decimalSuffixes[match[2] ?? ""]) : undefined;
  if (!match || scale === undefined) throw new Error(`not a memory quantity: ${JSON.stringify(quantity)} (e.g. 512Mi, 1Gi)`);
  return Math.round(Number(match[1]) * scale);
}

interface ChartValues {
  services?: Record<string, { resources?: { limits?: { memory?: string | number } } }>;
}

/** Each service's `resources.limits.memory` in the chart's values.yaml, in MiB (services without one left out). */
export function chartMemoryLimitsMb(root: string): Record<string, number> {
  const file = join(root, "charts", "orderflow", "values.yaml");
  const values = parse(readFileSync(file, "utf8")) as ChartValues;
  const limits: Record<string, number> = {};
  for (const [service, settings] of Object.entries(values.services ?? {})) {
    const memory = settings.resources?.limits?.memory;
    if (memory !== undefined) limits[service] = memoryQuantityBytes(memory) / 2 ** 20;
  }
  if (Object.keys(limits).length === 0) throw new Error(`${file} sets no services.<name>.resources.limits.memory`);
  return limits;
}
