import { Metadata } from "@grpc/grpc-js";

/**
 * Response headers or trailers as grpc-js Metadata (undefined when there are none). Protocol headers (content-type,
 * grpc-status...) are grpc-js's to write; `-bin` values are decoded from base64.
 */
export function metadataFromHeaders(headers: Headers, skip: ReadonlySet<string> = protocolHeaders): Metadata | undefined {
  let metadata: Metadata | undefined;
  headers.forEach((value, key) => {
    if (skip.has(key)) return;
    metadata ??= new Metadata();
    if (key.endsWith("-bin")) for (const part of value.split(/,\s*/)) metadata.add(key, Buffer.from(part, "base64"));
    else metadata.add(key, value);
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
