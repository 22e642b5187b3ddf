import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { sampleError } from "./generator-calls.js";
import type { ErrorSample } from "./protocol.js";

describe("sampleError", () => {
  it("keeps the first five failures of each code with the server's own message", () => {
    const samples: ErrorSample[] = [];
    for (let i = 0; i < 8; i++) sampleError(samples, "UNAVAILABLE", new ConnectError("a dependency is unavailable, retry later", Code.Unavailable), 1_000 + i);
    sampleError(samples, "INTERNAL", new Error("x".repeat(500)), 2_500.6);
    expect(samples.filter((s) => s.code === "UNAVAILABLE").map((s) => s.atMs)).toEqual([1_000, 1_001, 1_002, 1_003, 1_004]);
    expect(samples[0]?.message).toBe("a dependency is unavailable, retry later");
    expect(samples.at(-1)).toEqual({ code: "INTERNAL", message: "x".repeat(200), atMs: 2_501 });
  });
});
