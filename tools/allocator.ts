// The services' memory allocator. The container image preloads jemalloc
// (Dockerfile); local runs do the same when the host has it, so that `npm start`
// and the bench run the services as the chart does. Under glibc's malloc a busy
// gRPC server's main heap fragments: the order service's grew to 394 MiB under
// cached GetOrder load, three fifths of it memory freed that glibc had not
// handed back (docs/performance-history.md, sixty-seventh pass).
import { existsSync } from "node:fs";

const multiarch = process.arch === "arm64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";

/** Where Debian/Ubuntu (libjemalloc2), Fedora/RHEL (jemalloc) and source builds put the library. */
export const jemallocCandidates: readonly string[] = [
  `/usr/lib/${multiarch}/libjemalloc.so.2`,
  "/usr/lib64/libjemalloc.so.2",
  "/usr/lib/libjemalloc.so.2",
  "/usr/local/lib/libjemalloc.so.2",
];

export interface Allocator {
  /** Variables to add to each service's environment. */
  env: Record<string, string>;
  /** One line for people: which allocator the services get, and how to change it. */
  description: string;
}

/**
 * jemalloc when the host has it and `LD_PRELOAD` is not already set (set it,
 * even to nothing, to choose for yourself); the system's malloc otherwise.
 */
export function servicesAllocator(
  env: NodeJS.ProcessEnv,
  candidates: readonly string[] = jemallocCandidates,
  platform: NodeJS.Platform = process.platform,
): Allocator {
  const preload = env["LD_PRELOAD"];
  if (preload !== undefined) return { env: {}, description: preload === "" ? "the system's malloc (LD_PRELOAD is empty)" : `as LD_PRELOAD says (${preload})` };
  const library = platform === "linux" ? candidates.find((path) => existsSync(path)) : undefined;
  if (library === undefined) return { env: {}, description: "the system's malloc (install jemalloc, Debian's libjemalloc2, to run as the image does)" };
  return { env: { LD_PRELOAD: library }, description: `jemalloc, as in the image (${library})` };
}
