// Protobuf read field by field, for tests that meet messages they have no generated code for
// (google.rpc.Status in grpc-status-details-bin, OTLP export requests).
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

export type ProtoField = [number, bigint | Uint8Array];

/** A message's fields in order: number, and the varint or the length-delimited bytes (others skipped). */
export function protoFields(bytes: Uint8Array): ProtoField[] {
  const fields: ProtoField[] = [];
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (wireType === WireType.Varint) fields.push([number, BigInt(reader.uint64())]);
    else if (wireType === WireType.LengthDelimited) fields.push([number, reader.bytes()]);
    else reader.skip(wireType, number);
  }
  return fields;
}

/** The length-delimited values of field `n`. */
export function bytesOf(fields: readonly ProtoField[], n: number): Uint8Array[] {
  return fields.filter(([f, v]) => f === n && v instanceof Uint8Array).map(([, v]) => v as Uint8Array);
}
