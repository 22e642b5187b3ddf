import { describe, expect, it } from "vitest";
import { isConflictError, isConnectionError } from "./pgerrors.js";

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

describe("isConnectionError", () => {
  it("knows Postgres's own: connection exceptions, shutdowns, too many connections", () => {
    for (const code of ["08006", "08001", "57P01", "57P03", "53300"]) expect(isConnectionError(withCode("x", code))).toBe(true);
    expect(isConnectionError(new Error("Connection terminated unexpectedly"))).toBe(true);
  });

  it("knows Node's socket and DNS errors by their code, also with an empty message", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "EAI_AGAIN"]) expect(isConnectionError(withCode("", code))).toBe(true);
    expect(isConnectionError(new Error("getaddrinfo EAI_AGAIN db.internal"))).toBe(true);
  });

  it("looks inside an AggregateError (a host with several addresses) and an error's cause", () => {
    // What Node raises when every address of a dual-stack name refuses: no message of its own.
    const refused = Object.assign(new AggregateError([withCode("connect ECONNREFUSED ::1:5432", "ECONNREFUSED"), withCode("connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED")], ""), { code: "ECONNREFUSED" });
    expect(isConnectionError(refused)).toBe(true);
    expect(isConnectionError(new AggregateError([withCode("connect ECONNREFUSED 127.0.0.1:5432", "")], ""))).toBe(true);
    expect(isConnectionError(new Error("query failed", { cause: withCode("", "ECONNRESET") }))).toBe(true);
  });

  it("leaves data errors, conflicts and ordinary failures alone", () => {
    for (const code of ["23505", "22021", "22003", "40001"]) expect(isConnectionError(withCode("x", code))).toBe(false);
    expect(isConnectionError(new AggregateError([new Error("boom")], ""))).toBe(false);
    expect(isConnectionError(new Error("boom"))).toBe(false);
    expect(isConflictError(withCode("x", "40P01"))).toBe(true);
  });
});
