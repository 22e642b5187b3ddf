import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { beforeSequence, decodePageToken, encodePageToken } from "./paging.js";

const token = (before: string) => encodePageToken({ before });

function refused(pageToken: string): Code | undefined {
  try {
    decodePageToken(pageToken, beforeSequence);
    return undefined;
  } catch (error) {
    return error instanceof ConnectError ? error.code : undefined;
  }
}

describe("page tokens of pages by sequence", () => {
  it("give back the position they were made from; none for the first page", () => {
    expect(decodePageToken(token("42"), beforeSequence)).toEqual({ before: "42" });
    expect(decodePageToken(token("9223372036854775807"), beforeSequence)).toEqual({ before: "9223372036854775807" });
    expect(decodePageToken("", beforeSequence)).toBeUndefined();
  });

  it("refuse as invalid_argument a position a bigint cannot hold, or that is no sequence at all", () => {
    for (const before of ["9223372036854775808", "99999999999999999999", "-1", "1e3", "", "12 "]) expect(refused(token(before))).toBe(Code.InvalidArgument);
    expect(refused("not base64url json")).toBe(Code.InvalidArgument);
    expect(refused(encodePageToken({ before: 7 }))).toBe(Code.InvalidArgument);
  });
});
