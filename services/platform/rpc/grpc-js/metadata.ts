import { Metadata, type MetadataValue } from "@grpc/grpc-js";

/**
 * A header value as grpc-js metadata values: `-bin` values are base64 on the wire and binary in
 * metadata, and a `Headers` value of a binary name may join several with ", ".
 */
export function metadataValues(name: string, value: string): MetadataValue[] {
  return name.toLowerCase().endsWith("-bin") ? value.split(/,\s*/).map((part) => Buffer.from(part, "base64")) : [value];
}

/**
 * Response headers or trailers as grpc-js Metadata (undefined when there are none). Protocol headers (content-type,
 * grpc-status...) are grpc-js's to write; `-bin` values are decoded from base64.
 */
export function metadataFromHeaders(headers: Headers, skip: ReadonlySet<string> = protocolHeaders): Metadata | undefined {
  let metadata: Metadata | undefined;
  headers.forEach((value, key) => {
    if (skip.has(key)) return;
    metadata ??= new Metadata();
    for (const part of metadataValues(key, value)) metadata.add(key, part);
  });
  return metadata;
}

export const protocolHeaders: ReadonlySet<string> = new Set([
  "content-type",
  "content-length",
  "content-encoding",
  "host",
  "user-agent",
  "trailer",
  "date",
  "te",
  "grpc-encoding",
  "grpc-accept-encoding",
  "grpc-timeout",
  "grpc-status",
  "grpc-message",
]);
