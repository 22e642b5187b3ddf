import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";

export function timestamp(date: Date): Timestamp {
  return timestampFromDate(date);
}
