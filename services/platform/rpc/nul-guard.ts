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
    // The common case, no NUL anywhere, allocates nothing.
    if (!req.stream && containsNul(req.method.input, req.message)) {
      const problems = nulStrings(req.method.input, req.message, []);
      throw fieldError(Code.InvalidArgument, `${problems.map((p) => p.path.map(([name, , index]) => (index === undefined ? name : `${name}[${index}]`)).join(".")).join(", ")}: ${problems[0]?.message}`, problems);
    }
    return next(req);
  };
}

function containsNul(desc: DescMessage, message: Message): boolean {
  const fields = message as unknown as Record<string, unknown>;
  for (const field of desc.fields) {
    const value = field.oneof ? oneofValue(fields[field.oneof.localName], field.localName) : fields[field.localName];
    if (value === undefined) continue;
    if (field.fieldKind === "scalar") {
      if (typeof value === "string" && value.includes(NUL)) return true;
    } else if (field.fieldKind === "message") {
      if (containsNul(field.message, value as Message)) return true;
    } else if (field.fieldKind === "list" && Array.isArray(value)) {
      for (const item of value) if (field.listKind === "message" ? containsNul(field.message, item as Message) : typeof item === "string" && item.includes(NUL)) return true;
    }
  }
  return false;
}

function nulStrings(desc: DescMessage, message: Message, at: FieldProblem["path"]): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const found = (path: FieldProblem["path"]): void => void problems.push({ path, ruleId: "string.no_nul", message: "must not contain the NUL character (U+0000)" });
  const fields = message as unknown as Record<string, unknown>;
  for (const field of desc.fields) {
    const value = field.oneof ? oneofValue(fields[field.oneof.localName], field.localName) : fields[field.localName];
    if (value === undefined) continue;
    if (field.fieldKind === "scalar") {
      if (typeof value === "string" && value.includes(NUL)) found([...at, [field.name, field.number]]);
    } else if (field.fieldKind === "message") {
      problems.push(...nulStrings(field.message, value as Message, [...at, [field.name, field.number]]));
    } else if (field.fieldKind === "list" && Array.isArray(value)) {
      for (const [index, item] of value.entries()) {
        const path: FieldProblem["path"] = [...at, [field.name, field.number, index]];
        if (field.listKind === "message") problems.push(...nulStrings(field.message, item as Message, path));
        else if (typeof item === "string" && item.includes(NUL)) found(path);
      }
    }
  }
  return problems;
}

function oneofValue(oneof: unknown, localName: string): unknown {
  const selected = oneof as { case?: string; value?: unknown } | undefined;
  return selected?.case === localName ? selected.value : undefined;
}
