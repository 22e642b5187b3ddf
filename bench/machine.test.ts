import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { autogroupScheduling, machineFacts, mappedAllocator, nodeFlagsOf } from "./machine.js";

describe("machine facts", () => {
  const dir = mkdtempSync(join(tmpdir(), "orderflow-machine-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("names a process's malloc from the libraries mapped into it", () => {
    const line = (path: string) => `7f0c1a200000-7f0c1a222000 r--p 00000000 08:01 131 ${path}\n`;
    expect(mappedAllocator(1, () => line("/usr/lib/x86_64-linux-gnu/libc.so.6") + line("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"))).toBe("jemalloc");
    expect(mappedAllocator(1, () => line("/usr/lib/x86_64-linux-gnu/libc.so.6"))).toBe("system malloc");
    expect(mappedAllocator(undefined)).toBe("unknown");
    expect(mappedAllocator(1, () => {
      throw new Error("ENOENT");
    })).toBe("unknown");
    expect(mappedAllocator(process.pid)).toBe(process.env["LD_PRELOAD"]?.includes("jemalloc") ? "jemalloc" : "system malloc");
  });

  it("reads a node process's flags from its command line, up to its entry point", () => {
    const cmdline = (...args: string[]) => () => `${args.join("\0")}\0`;
    expect(nodeFlagsOf(1, cmdline("/usr/bin/node", "--enable-source-maps", "--max-semi-space-size=64", "/app/dist/services/order/main.js"))).toEqual(["--enable-source-maps", "--max-semi-space-size=64"]);
    expect(nodeFlagsOf(1, cmdline("node", "dist/services/order/main.js", "--not-a-node-flag"))).toEqual([]);
    expect(nodeFlagsOf(undefined)).toBeNull();
    expect(nodeFlagsOf(1, () => {
      throw new Error("ENOENT");
    })).toBeNull();
  });

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
