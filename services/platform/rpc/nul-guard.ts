import type { DescMessage, Message } from "@bufbuild/protobuf";
import { Code, type Interceptor } from "@connectrpc/connect";
import { type FieldProblem, fieldError } from "./violations.js";

const NUL = "\u0000";

/**
 * Refuses a request with U+0000 in any of its strings, as invalid_argument with field
 * details. Postgres text cannot hold it: such a string would fail the statement it reaches —
 * a batched one with every request it shares (a page of ListOrders, a catalogue read) —
 * as an internal error, or be retried as an outage. Client and bidi streams are not looked into.
 */
export function rejectNulCharacters(): Interceptor {
  return (next) => (req) => {
    if (!req.stream) {
      const problems = nulStrings(req.method.input, req.message, noPath, []);
      if (problems.length > 0) throw fieldError(Code.InvalidArgument, `${problems.map((p) => describe(p.path)).join(", ")}: must not contain the NUL character (U+0000)`, problems);
    }
    return next(req);
  };
}

const noPath: FieldProblem["path"] = [];

/** Adds to `problems` every string under `message` that holds a NUL; paths are only built below message fields. */
function nulStrings(desc: DescMessage, message: Message, at: FieldProblem["path"], problems: FieldProblem[]): FieldProblem[] {
  const fields = message as unknown as Record<string, unknown>;
  for (const field of desc.fields) {
    const value = field.oneof ? oneofValue(fields[field.oneof.localName], field.localName) : fields[field.localName];
    if (value === undefined) continue;
    if (field.fieldKind === "scalar") {
      if (typeof value === "string" && value.includes(NUL)) problems.push(nulAt([...at, [field.name, field.number]]));
    } else if (field.fieldKind === "message") {
      nulStrings(field.message, value as Message, [...at, [field.name, field.number]], problems);
    } else if (field.fieldKind === "list" && Array.isArray(value)) {
      for (const [index, item] of value.entries()) {
        if (field.listKind === "message") nulStrings(field.message, item as Message, [...at, [field.name, field.number, index]], problems);
        else if (typeof item === "string" && item.includes(NUL)) problems.push(nulAt([...at, [field.name, field.number, index]]));
      }
    }
  }
  return problems;
}

function nulAt(path: FieldProblem["path"]): FieldProblem {
  return { path, ruleId: "string.no_nul", message: "must not contain the NUL character (U+0000)" };
}

function describe(path: FieldProblem["path"]): string {
  return path.map(([name, , index]) => (index === undefined ? name : `${name}[${index}]`)).join(".");
}

function oneofValue(oneof: unknown, localName: string): unknown {
  const selected = oneof as { case?: string; value?: unknown } | undefined;
  return selected?.case === localName ? selected.value : undefined;
}
