import { describe, expect, it } from "vitest";
import { z } from "zod";
import { baseConfigShape, databaseConfigShape, parseConfig } from "./config.js";

const shape = { ...baseConfigShape, ...databaseConfigShape, INVENTORY_URL: z.url() };

describe("parseConfig", () => {
  it("applies defaults and coerces numbers", () => {
    const config = parseConfig(shape, { DATABASE_URL: "postgres://localhost/x", INVENTORY_URL: "http://localhost:1" });
    expect(config.PORT).toBe(8080);
    expect(config.DATABASE_POOL_MAX).toBe(10);
    expect(config.DATABASE_READ_URL).toBeUndefined();
  });

  it("names a missing variable in one line", () => {
    expect(() => parseConfig(shape, { INVENTORY_URL: "http://x" })).toThrowError(/^invalid configuration: DATABASE_URL is required$/);
  });

  it("names a malformed variable, what it expects and what it got", () => {
    expect(() => parseConfig(shape, { DATABASE_URL: "mysql://x", INVENTORY_URL: "http://x", PORT: "http" })).toThrowError(
      /PORT must be .*\(got "http"\).*; DATABASE_URL must be a postgres:\/\/ URL \(got "mysql:\/\/x"\)|DATABASE_URL.*PORT/,
    );
  });

  it("treats an empty variable as unset", () => {
    const config = parseConfig(shape, { DATABASE_URL: "postgres://h/d", DATABASE_READ_URL: "", INVENTORY_URL: "http://x" });
    expect(config.DATABASE_READ_URL).toBeUndefined();
  });
});
