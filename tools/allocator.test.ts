import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { jemallocCandidates, servicesAllocator } from "./allocator.js";
import { projectNode } from "./system.js";

const dir = mkdtempSync(join(tmpdir(), "orderflow-allocator-"));
const present = join(dir, "libjemalloc.so.2");
writeFileSync(present, "");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("servicesAllocator", () => {
  it("preloads the first jemalloc found on Linux", () => {
    const chosen = servicesAllocator({}, [join(dir, "absent.so"), present], "linux");
    expect(chosen.env).toEqual({ LD_PRELOAD: present });
    expect(chosen.description).toContain("jemalloc");
  });

  it("leaves an LD_PRELOAD that is set alone, even an empty one", () => {
    expect(servicesAllocator({ LD_PRELOAD: "/opt/tcmalloc.so" }, [present], "linux")).toEqual({ env: {}, description: "as LD_PRELOAD says (/opt/tcmalloc.so)" });
    expect(servicesAllocator({ LD_PRELOAD: "" }, [present], "linux").env).toEqual({});
  });

  it("falls back to the system's malloc, saying what to install", () => {
    expect(servicesAllocator({}, [join(dir, "absent.so")], "linux")).toEqual({
      env: {},
      description: "the system's malloc (install jemalloc, Debian's libjemalloc2, to run as the image does)",
    });
    expect(servicesAllocator({}, [present], "darwin").env).toEqual({});
  });

  const installed = servicesAllocator({}).env["LD_PRELOAD"];
  it.skipIf(installed === undefined)("makes the project's Node run on this host's jemalloc", () => {
    const node = projectNode();
    const mapped = (env: NodeJS.ProcessEnv) =>
      spawnSync(node, ["-e", "process.stdout.write(require('fs').readFileSync('/proc/self/maps', 'utf8'))"], { env, encoding: "utf8" }).stdout;
    const { LD_PRELOAD: _ignored, ...withoutPreload } = process.env;
    expect(mapped({ ...withoutPreload, ...servicesAllocator(withoutPreload).env })).toContain("libjemalloc.so.2");
    expect(mapped(withoutPreload)).not.toContain("libjemalloc");
    expect(jemallocCandidates).toContain(installed);
  });
});
