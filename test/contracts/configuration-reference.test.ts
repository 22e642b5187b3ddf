import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { fraudConfigShape } from "../../services/fraud/config.js";
import { inventoryConfigShape } from "../../services/inventory/config.js";
import { notificationConfigShape } from "../../services/notification/config.js";
import { orderConfigShape } from "../../services/order/config.js";
import { paymentConfigShape } from "../../services/payment/config.js";
import { baseConfigShape } from "../../services/platform/config.js";

/** README's configuration table (variable | services | default | meaning): each variable's row, split into its cells. */
function configurationTable(markdown: string): Map<string, { services: string; defaultCell: string }> {
  const lines = markdown.split("\n");
  const header = lines.indexOf("| variable | services | default | meaning |");
  const end = lines.indexOf("", header);
  return new Map(
    lines.slice(header + 2, end).map((line) => {
      const [name = "", services = "", defaultCell = ""] = line.replace(/^\| /, "").split(" | ");
      return [name.replaceAll("`", ""), { services, defaultCell }] as const;
    }),
  );
}

const rows = configurationTable(readFileSync(join(import.meta.dirname, "..", "..", "README.md"), "utf8"));

/** What README's default column says for a setting: its default, "required", or "—" when it may be left unset. */
function documentedDefault(schema: z.core.$ZodType): string {
  if (schema instanceof z.ZodPipe) return documentedDefault(schema.def.in);
  if (schema instanceof z.ZodDefault) return schema.def.defaultValue === "" ? "empty" : `\`${String(schema.def.defaultValue)}\``;
  if (schema instanceof z.ZodOptional) return "—";
  return "required";
}

const shapes: [string, Record<string, z.core.$ZodType>][] = [
  ["all", baseConfigShape],
  ["order", orderConfigShape],
  ["inventory", inventoryConfigShape],
  ["fraud", fraudConfigShape],
  ["payment", paymentConfigShape],
  ["notification", notificationConfigShape],
];

describe("README's configuration reference", () => {
  const settings = shapes.flatMap(([service, shape]) => Object.entries(shape).map(([name, schema]) => ({ service, name, schema })));

  it.each(settings)("names $name for $service, with its default", ({ service, name, schema }) => {
    const row = rows.get(name);
    expect(row, `README's configuration table has no row for ${name}`).toBeDefined();
    const services = row?.services.split(", ") ?? [];
    expect(services.includes("all") || services.includes(service), `${name}'s row names ${row?.services}, not ${service}`).toBe(true);
    expect(row?.defaultCell).toBe(documentedDefault(schema));
  });
});
