import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot, serviceTable } from "../tools/system.js";
import { chartMemoryLimitsMb, memoryQuantityBytes } from "./pod-memory.js";

describe("memoryQuantityBytes", () => {
  it("reads Kubernetes' binary and decimal suffixes and plain bytes", () => {
    expect(memoryQuantityBytes("512Mi")).toBe(512 * 2 ** 20);
    expect(memoryQuantityBytes("1Gi")).toBe(2 ** 30);
    expect(memoryQuantityBytes("1.5Gi")).toBe(1.5 * 2 ** 30);
    expect(memoryQuantityBytes("400M")).toBe(400e6);
    expect(memoryQuantityBytes("128k")).toBe(128e3);
    expect(memoryQuantityBytes(268435456)).toBe(268435456);
  });

  it("refuses what is not a quantity", () => {
    for (const bad of ["512MB", "Mi", "-1Gi", "1 Gi x", ""]) expect(() => memoryQuantityBytes(bad)).toThrow(/not a memory quantity/);
  });
});

describe("chartMemoryLimitsMb", () => {
  it("gives every service of the system the limit the chart gives its pods", () => {
    const limits = chartMemoryLimitsMb(repoRoot());
    expect(Object.keys(limits).sort()).toEqual(serviceTable.map((s) => s.name).sort());
    expect(limits["order"]).toBe(1024);
    for (const limit of Object.values(limits)) expect(limit).toBeGreaterThanOrEqual(256);
  });

  const root = mkdtempSync(join(tmpdir(), "orderflow-chart-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  it("leaves out services without a limit, and says so when none has one", () => {
    mkdirSync(join(root, "charts", "orderflow"), { recursive: true });
    const values = join(root, "charts", "orderflow", "values.yaml");
    writeFileSync(values, "services:\n  order:\n    resources:\n      limits: { memory: 768Mi }\n  fraud:\n    resources:\n      requests: { cpu: 100m }\n");
    expect(chartMemoryLimitsMb(root)).toEqual({ order: 768 });
    writeFileSync(values, "services:\n  fraud: {}\n");
    expect(() => chartMemoryLimitsMb(root)).toThrow(/sets no services.<name>.resources.limits.memory/);
  });
});
