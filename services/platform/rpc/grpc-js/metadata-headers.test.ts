// The view of request metadata reads and changes as a Headers object filled with the same
// values would: the Fetch API's own Headers is the reference.
import { Metadata } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { MetadataHeaders } from "./metadata-headers.js";

const binary = Buffer.from([0, 1, 2, 250]);

function metadata(): Metadata {
  const m = new Metadata();
  m.add("x-trace", "abc");
  m.add("x-multi", "a");
  m.add("x-multi", "b");
  m.add("x-bin-bin", binary);
  m.add("user-agent", "grpc-node-js/1.14");
  return m;
}

function reference(): Headers {
  return new Headers([
    ["x-trace", "abc"],
    ["x-multi", "a"],
    ["x-multi", "b"],
    ["x-bin-bin", binary.toString("base64")],
    ["user-agent", "grpc-node-js/1.14"],
  ]);
}

describe("MetadataHeaders", () => {
  it("reads names case-insensitively, repeated values joined, binary values as base64", () => {
    const view = new MetadataHeaders(metadata());
    const expected = reference();
    for (const name of ["x-trace", "X-Trace", "x-multi", "x-bin-bin", "user-agent", "absent"]) {
      expect(view.get(name)).toBe(expected.get(name));
      expect(view.has(name)).toBe(expected.has(name));
    }
    expect(view.getSetCookie()).toEqual([]);
  });

  it("iterates in name order, as Headers does", () => {
    const view = new MetadataHeaders(metadata());
    expect([...view]).toEqual([...reference()]);
    expect([...view.keys()]).toEqual([...reference().keys()]);
    expect([...view.values()]).toEqual([...reference().values()]);
    const seen: string[] = [];
    view.forEach((value, key, parent) => {
      expect(parent).toBe(view);
      seen.push(`${key}=${value}`);
    });
    expect(seen).toEqual([...reference()].map(([key, value]) => `${key}=${value}`));
  });

  it("changes the metadata it views: set, append and delete, binary values written from base64", () => {
    const m = metadata();
    const view = new MetadataHeaders(m);
    view.set("X-Trace", "def");
    view.append("x-multi", "c");
    view.append("x-new-bin", Buffer.from([9, 8]).toString("base64"));
    view.delete("user-agent");
    expect(m.get("x-trace")).toEqual(["def"]);
    expect(m.get("x-multi")).toEqual(["a", "b", "c"]);
    expect(m.get("x-new-bin")).toEqual([Buffer.from([9, 8])]);
    view.set("x-new-bin", [Buffer.from([1]), Buffer.from([2, 3])].map((b) => b.toString("base64")).join(", "));
    expect(m.get("x-new-bin")).toEqual([Buffer.from([1]), Buffer.from([2, 3])]);
    expect(view.has("user-agent")).toBe(false);
    expect(view.get("x-multi")).toBe("a, b, c");
  });
});
