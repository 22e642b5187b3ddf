import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { autogroupScheduling, machineFacts } from "./machine.js";

describe("machine facts", () => {
  const dir = mkdtempSync(join(tmpdir(), "orderflow-machine-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads the kernel's autogroup setting: 1 on, 0 off, anything else or no file unknown", () => {
    const setting = (value: string): string => {
      const file = join(dir, `setting-${value.trim() || "empty"}`);
      writeFileSync(file, value);
      return file;
    };
    expect(autogroupScheduling(setting("1\n"))).toBe(true);
    expect(autogroupScheduling(setting("0\n"))).toBe(false);
    expect(autogroupScheduling(setting("\n"))).toBeNull();
    expect(autogroupScheduling(join(dir, "absent"))).toBeNull();
  });

  it("records it with the other facts of the run", () => {
    expect(machineFacts().autogroupScheduling).toBe(autogroupScheduling());
  });
});
