import type { Metadata, MetadataValue } from "@grpc/grpc-js";
import { metadataValues } from "./metadata.js";

/**
 * A grpc-js call's request metadata as the `Headers` of its HandlerContext: a view, not a
 * copy. Filling a `Headers` object validates and normalizes every name and value on each
 * call, which under load cost more than any one interceptor, while handlers and the
 * tracing interceptor read one or two names at most.
 *
 * It keeps the rules of `Headers`: names are case-insensitive, a name's values read
 * joined by ", ", iteration is in name order, and binary (`-bin`) values read as base64,
 * as on the wire (and are written from base64).
 */
export class MetadataHeaders implements Headers {
  constructor(private readonly metadata: Metadata) {}

  get(name: string): string | null {
    const values = this.metadata.get(name);
    return values.length === 0 ? null : values.map(asText).join(", ");
  }

  has(name: string): boolean {
    return this.metadata.get(name).length > 0;
  }

  getSetCookie(): string[] {
    return this.metadata.get("set-cookie").map(asText);
  }

  set(name: string, value: string): void {
    this.metadata.remove(name);
    this.append(name, value);
  }

  append(name: string, value: string): void {
    for (const part of metadataValues(name, value)) this.metadata.add(name, part);
  }

  delete(name: string): void {
    this.metadata.remove(name);
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }

  *entries(): ReturnType<Headers["entries"]> {
    const all = this.metadata.toJSON();
    for (const key of Object.keys(all).sort()) {
      const values = all[key];
      if (values && values.length > 0) yield [key, values.map(asText).join(", ")];
    }
  }

  *keys(): ReturnType<Headers["keys"]> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): ReturnType<Headers["values"]> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): ReturnType<Headers["entries"]> {
    return this.entries();
  }
}

function asText(value: MetadataValue): string {
  return typeof value === "string" ? value : value.toString("base64");
}
