import { describe, expect, it } from "vitest";
import { createFailureNote } from "./saga-steps.js";

describe("createFailureNote", () => {
  it("says what each code's failures were told and when, leaving refusals at the bound out", () => {
    const note = createFailureNote({
      offeredPerSec: 1_700,
      createErrors: { UNAVAILABLE: 15, RESOURCE_EXHAUSTED: 40 },
      createErrorSamples: [
        { code: "UNAVAILABLE", message: "a dependency is unavailable, retry later", atMs: 61_234 },
        { code: "UNAVAILABLE", message: "stream closed without a status (HTTP/2 code 2)", atMs: 62_000 },
        { code: "UNAVAILABLE", message: "a dependency is unavailable, retry later", atMs: 121_950 },
        { code: "RESOURCE_EXHAUSTED", message: "too many orders in progress", atMs: 5_000 },
      ],
    });
    expect(note).toBe(
      'saga step 1700/s: CreateOrders failed — UNAVAILABLE ×15 (the first: "a dependency is unavailable, retry later" at +61.2 s, +122.0 s; "stream closed without a status (HTTP/2 code 2)" at +62.0 s)',
    );
  });

  it("says nothing when every failure was a refusal at the bound, and names codes a run before the samples kept", () => {
    expect(createFailureNote({ offeredPerSec: 3_400, createErrors: { RESOURCE_EXHAUSTED: 9_582 }, createErrorSamples: [] })).toBeUndefined();
    expect(createFailureNote({ offeredPerSec: 50, createErrors: {} })).toBeUndefined();
    expect(createFailureNote({ offeredPerSec: 50, createErrors: { INTERNAL: 2 } })).toBe("saga step 50/s: CreateOrders failed — INTERNAL ×2");
  });

  it("says how many calls were sent again after a refused stream, with or without failures", () => {
    const resent = "16 CreateOrders sent again after the server refused their stream (a connection's GOAWAY at its maximum age), as gRPC clients do";
    expect(createFailureNote({ offeredPerSec: 1_700, createErrors: {}, createResent: 16 })).toBe(`saga step 1700/s: ${resent}`);
    expect(createFailureNote({ offeredPerSec: 1_700, createErrors: { INTERNAL: 1 }, createResent: 16 })).toBe(`saga step 1700/s: CreateOrders failed — INTERNAL ×1; ${resent}`);
    expect(createFailureNote({ offeredPerSec: 1_700, createErrors: {}, createResent: 0 })).toBeUndefined();
  });
});
