// The chart's alerting rules as Prometheus loads them: the PrometheusRule's groups, rendered.
import { at, objArr, type JsonObject } from "./json.js";
import { renderChart } from "./renderer.js";
import { parseManifest } from "./validate.js";

export interface RuleGroups {
  groups: JsonObject[];
}

/** The groups of the release's PrometheusRule (prometheusRule.enabled, with `values` on top). */
export function renderedRuleGroups(opts: { namespace: string; releaseName: string; values?: JsonObject }): RuleGroups {
  const r = renderChart({ namespace: opts.namespace, releaseName: opts.releaseName, values: { ...opts.values, prometheusRule: { enabled: true, ...(opts.values?.["prometheusRule"] as JsonObject | undefined) } } });
  if (!r.ok) throw new Error(`the chart did not render: ${r.stderr}`);
  const rule = parseManifest(r.manifest).find((o) => o.kind === "PrometheusRule");
  if (!rule) throw new Error("the chart rendered no PrometheusRule");
  return { groups: objArr(at(rule.spec, "groups"), "groups") };
}

/** The same groups with each alert's annotations left out (a rule unit test then compares labels alone). */
export function withoutAnnotations({ groups }: RuleGroups): RuleGroups {
  return { groups: groups.map((group) => ({ ...group, rules: objArr(group["rules"], "rules").map(({ annotations: _annotations, ...rule }) => rule) })) };
}
