// The offline renderer must behave like Helm's engine on the features the
// chart relies on; this fixture pins the Helm 3 results.
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ensureRenderer, helmOnPath, K8S_TEST_DIR } from "./lib/renderer.js";

const FIXTURE = join(K8S_TEST_DIR, "fixtures/helm-semantics");

function render(...extra: string[]) {
  const r = spawnSync(ensureRenderer(), ["--chart", FIXTURE, "--name", "rel", "--namespace", "ns", ...extra], { encoding: "utf8" });
  return { ok: r.status === 0, out: r.stdout, err: r.stderr };
}

describe.skipIf(helmOnPath())("Go renderer matches Helm's template engine", () => {
  it("renders functions, built-in objects and values as Helm 3 does", () => {
    const r = render();
    expect(r.ok, r.err).toBe(true);
    expect(r.out).toContain("# Source: fixture/templates/out.yaml");
    const cm = parse(r.out.replace(/^---\n# Source:.*\n/gm, "")) as { data: Record<string, string>; metadata: { name: string } };
    expect(cm.metadata.name).toBe("fixture-rel");
    expect(cm.data).toMatchObject({
      missing: "", // <no value> is blanked
      include: "FIXTURE-REL",
      tpl: "hello-tpl",
      lookup: "{}", // helm template: lookup returns an empty map
      fromYaml: '{"k":[1,2]}',
      toJson: '{"a":{"b":"two"},"z":1}',
      number: "8080",
      kube: "1.32",
      hasApps: "true",
      chart: "fixture-1.2.3-9.9-Helm-ns-true",
      file: "from a file",
      template: "fixture/templates/out.yaml",
      sprig: "1,2,3",
    });
    expect(cm.data["map.yaml"]).toBe("a:\n  b: two\nz: 1\n");
  });

  it("fails on required values with the template's message", () => {
    const r = render("-f", join(FIXTURE, "..", "require-values.yaml"));
    expect(r.ok).toBe(false);
    expect(r.err).toContain("needed must be set");
  });

  it("has no env/expandenv (Helm removes them from sprig)", () => {
    const r = render("--chart", join(K8S_TEST_DIR, "fixtures/helm-env"));
    expect(r.ok).toBe(false);
    expect(r.err).toMatch(/function "env" not defined/);
  });
});
