// Typed access to parsed YAML/JSON (rendered manifests, values files, schemas)
// without `any`: each accessor checks the shape it expects and throws a clear
// error when the document does not have it.

export type Json = string | number | boolean | null | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}
type Key = string | number;

function describe(v: unknown): string {
  const kind = v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
  const text = JSON.stringify(v) ?? String(v);
  return `${kind} ${text.length > 80 ? `${text.slice(0, 77)}...` : text}`;
}

function fail(what: string, expected: string, v: unknown): never {
  throw new TypeError(`expected ${what} to be ${expected}, got ${describe(v)}`);
}

export const isObj = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** `v` as an object (not null, not an array). */
export function obj(v: unknown, what = "value"): JsonObject {
  return isObj(v) ? v : fail(what, "an object", v);
}

/** `v` as an array. */
export function arr(v: unknown, what = "value"): Json[] {
  return Array.isArray(v) ? (v as Json[]) : fail(what, "an array", v);
}

/** `v` as a string. */
export function str(v: unknown, what = "value"): string {
  return typeof v === "string" ? v : fail(what, "a string", v);
}

/** `v` as a number. */
export function num(v: unknown, what = "value"): number {
  return typeof v === "number" ? v : fail(what, "a number", v);
}

/** `v ?? {}`, checked to be an object. */
export function objOr(v: unknown, what = "value"): JsonObject {
  return v === undefined || v === null ? {} : obj(v, what);
}

/** `v ?? []`, checked to be an array. */
export function arrOr(v: unknown, what = "value"): Json[] {
  return v === undefined || v === null ? [] : arr(v, what);
}

/** `v` as an array of objects. */
export function objArr(v: unknown, what = "value"): JsonObject[] {
  return arr(v, what).map((x, i) => obj(x, `${what}[${i}]`));
}

/** `v ?? []`, checked to be an array of objects. */
export function objArrOr(v: unknown, what = "value"): JsonObject[] {
  return v === undefined || v === null ? [] : objArr(v, what);
}

/** `v` as a string-to-string map (labels, annotations, selectors). */
export function strMap(v: unknown, what = "value"): Record<string, string> {
  const o = obj(v, what);
  for (const [k, x] of Object.entries(o)) str(x, `${what}.${k}`);
  return o as Record<string, string>;
}

/** `v ?? {}`, checked to be a string-to-string map. */
export function strMapOr(v: unknown, what = "value"): Record<string, string> {
  return v === undefined || v === null ? {} : strMap(v, what);
}

/**
 * `v?.[k1]?.[k2]...`: the value at a path, or undefined as soon as a step is
 * missing (string keys step into objects, number keys into arrays).
 */
export function at(v: unknown, ...path: Key[]): Json | undefined {
  let cur: unknown = v;
  for (const k of path) {
    if (typeof k === "number" ? Array.isArray(cur) : isObj(cur)) cur = (cur as Record<Key, unknown>)[k];
    else return undefined;
  }
  return cur as Json | undefined;
}
