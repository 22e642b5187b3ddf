import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const buf = join(root, "node_modules", ".bin", "buf");
const scratch = mkdtempSync(join(tmpdir(), "orderflow-gen-"));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("Protobuf contracts", () => {
  it("pass buf lint", () => {
    expect(() => execFileSync(buf, ["lint"], { cwd: root, stdio: "pipe" })).not.toThrow();
  });

  it("match the committed generated code exactly", () => {
    execFileSync(buf, ["generate", "-o", scratch], { cwd: root, stdio: "pipe" });
    const committed = files(join(root, "gen")).map((f) => relative(join(root, "gen"), f)).sort();
    const fresh = files(join(scratch, "gen")).map((f) => relative(join(scratch, "gen"), f)).sort();
    expect(fresh).toEqual(committed);
    for (const file of fresh) {
      expect(readFileSync(join(scratch, "gen", file), "utf8"), `gen/${file} differs from proto/: run npm run generate`).toBe(readFileSync(join(root, "gen", file), "utf8"));
    }
  });
});
