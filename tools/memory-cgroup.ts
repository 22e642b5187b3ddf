// A memory cgroup for one process tree: how a pod's memory limit is reproduced on
// one machine (`npm run bench -- --pod-memory`, tools/node-flags.test.ts). The
// kernel enforces the limit as in a container, and V8 sizes its heap from it at
// start, so the process must be inside before node runs: wrap() starts it through
// a shell that joins the cgroup and then execs it (same pid).
//
// Making one needs root on Linux: cgroup v1 (a child of this process's own memory
// cgroup) or v2 (a child of the hierarchy's root, where the memory controller is
// enabled for children). Swap is held at zero where the kernel offers the setting,
// as in a pod.
import { type Dirent, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { InfraError } from "./infra-error.js";
import { type Command, runUnder } from "./run-under.js";

export interface MemoryCgroupUsage {
  limitMb: number;
  /** The most memory the cgroup was charged (its processes' pages and page cache); null where the kernel does not record it (v2 before Linux 5.19). */
  peakMb: number | null;
  /**
   * Times a charge met the limit and the kernel had to reclaim first (v2 memory.events max);
   * null on v1, whose memory.failcnt read 0 here (Linux 6.18) even as the kernel killed a process
   * for the limit.
   */
  limitHits: number | null;
  /** Processes the kernel killed for memory in this cgroup. */
  oomKills: number;
}

/** Why this process may not make a memory cgroup: a problem for the user, told in one line. */
export class MemoryCgroupError extends InfraError {
  override name = "MemoryCgroupError";
}

const mebibyte = 2 ** 20;

export class MemoryCgroup {
  private constructor(
    /** The cgroup's folder under /sys/fs/cgroup. */
    readonly dir: string,
    private readonly version: 1 | 2,
    private readonly limitBytes: number,
  ) {}

  /**
   * Makes (or takes over, when a run before this one left it) the cgroup `name`, limited to
   * `limitBytes`. Throws MemoryCgroupError saying why when this process may not.
   */
  static create(name: string, limitBytes: number, mount = "/sys/fs/cgroup", selfCgroupFile = "/proc/self/cgroup"): MemoryCgroup {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new MemoryCgroupError(`a cgroup name is letters, digits, '.', '_' and '-' (got ${JSON.stringify(name)})`);
    const { version, parent } = placement(mount, selfCgroupFile);
    if (version === 2) enableMemoryController(mount);
    const cgroup = new MemoryCgroup(join(parent, name), version, limitBytes);
    try {
      mkdirSync(cgroup.dir, { recursive: true });
      if (version === 2) {
        writeFileSync(join(cgroup.dir, "memory.max"), String(limitBytes));
        writeIfPresent(join(cgroup.dir, "memory.swap.max"), "0");
      } else {
        writeFileSync(join(cgroup.dir, "memory.limit_in_bytes"), String(limitBytes));
        writeIfPresent(join(cgroup.dir, "memory.memsw.limit_in_bytes"), String(limitBytes));
      }
    } catch (error) {
      throw new MemoryCgroupError(`cannot make the memory cgroup ${cgroup.dir} (${(error as Error).message}): run as root on Linux`);
    }
    return cgroup;
  }

  /** create(), or undefined where this process may not make a memory cgroup (tests that need one skip then). */
  static tryCreate(name: string, limitBytes: number): MemoryCgroup | undefined {
    try {
      return MemoryCgroup.create(name, limitBytes);
    } catch (error) {
      if (error instanceof MemoryCgroupError) return undefined;
      throw error;
    }
  }

  /** Whether this process may make memory cgroups here. */
  static permitted(): boolean {
    const probe = MemoryCgroup.tryCreate(`orderflow-probe-${process.pid}`, 2 ** 30);
    probe?.remove();
    return probe !== undefined;
  }

  /** The command and arguments that run `command args` inside this cgroup from its first instruction. */
  wrap(command: string, args: readonly string[]): Command {
    return runUnder(["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', join(this.dir, "cgroup.procs")], command, args);
  }

  usage(): MemoryCgroupUsage {
    const read = (file: string): string | undefined => {
      try {
        return readFileSync(join(this.dir, file), "utf8");
      } catch {
        return undefined;
      }
    };
    const mb = (bytes: string | undefined): number | null => (bytes === undefined || !Number.isFinite(Number(bytes)) ? null : Math.round((Number(bytes) / mebibyte) * 10) / 10);
    const limitMb = this.limitBytes / mebibyte;
    if (this.version === 2) {
      const events = read("memory.events") ?? "";
      return { limitMb, peakMb: mb(read("memory.peak")), limitHits: counter(events, "max"), oomKills: counter(events, "oom_kill") };
    }
    return {
      limitMb,
      peakMb: mb(read("memory.max_usage_in_bytes")),
      limitHits: null,
      oomKills: counter(read("memory.oom_control") ?? "", "oom_kill"),
    };
  }

  /** Removes the cgroup once its processes are gone; false when it could not (one still runs). */
  remove(): boolean {
    try {
      rmdirSync(this.dir);
      return true;
    } catch {
      return !existsSync(this.dir);
    }
  }
}

/**
 * Removes the cgroups named `<prefix>…-<pid>` whose process is no longer running: those a
 * process killed before it could remove its own left behind. Returns how many it removed; 0
 * where this process may not make cgroups.
 */
export function removeLeftoverCgroups(prefix: string, mount = "/sys/fs/cgroup", selfCgroupFile = "/proc/self/cgroup"): number {
  let parent: string;
  let entries: Dirent[];
  try {
    parent = placement(mount, selfCgroupFile).parent;
    entries = readdirSync(parent, { withFileTypes: true });
  } catch {
    return 0;
  }
  let removed = 0;
  for (const entry of entries) {
    const owner = entry.isDirectory() && entry.name.startsWith(prefix) ? /-(\d+)$/.exec(entry.name)?.[1] : undefined;
    if (owner === undefined || isRunning(Number(owner))) continue;
    try {
      rmdirSync(join(parent, entry.name));
      removed++;
    } catch {
      // Still holds a process, or not ours to remove.
    }
  }
  return removed;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/**
 * Where this process's memory cgroups go: on v2 under the hierarchy's root (a cgroup with
 * processes of its own, this one's most likely, may not give its children controllers; the
 * root is exempt), on v1 under this process's own memory cgroup.
 */
function placement(mount: string, selfCgroupFile: string): { version: 1 | 2; parent: string } {
  return existsSync(join(mount, "cgroup.controllers")) ? { version: 2, parent: mount } : { version: 1, parent: v1Parent(mount, selfCgroupFile) };
}

/** v1: a child of this process's own memory cgroup, so that a limit above it still applies. */
function v1Parent(mount: string, selfCgroupFile: string): string {
  let own: string | undefined;
  try {
    own = readFileSync(selfCgroupFile, "utf8")
      .split("\n")
      .map((line) => line.split(":"))
      .find(([, controllers]) => controllers?.split(",").includes("memory"))?.[2];
  } catch {
    own = undefined;
  }
  if (own === undefined || !existsSync(join(mount, "memory"))) throw new MemoryCgroupError(`no memory cgroup to make one under (no cgroup v2 at ${mount}, no v1 memory controller)`);
  return join(mount, "memory", own);
}

/** v2: gives the root's children the memory controller where they lack it. */
function enableMemoryController(mount: string): void {
  const control = join(mount, "cgroup.subtree_control");
  try {
    if (!readFileSync(control, "utf8").split(/\s+/).includes("memory")) writeFileSync(control, "+memory");
  } catch (error) {
    throw new MemoryCgroupError(
      `the memory controller is not enabled for ${mount}'s children and could not be (${(error as Error).message}): run as root, on a host rather than in a container, whose cgroup holds processes of its own`,
    );
  }
}

function writeIfPresent(file: string, value: string): void {
  if (existsSync(file)) writeFileSync(file, value);
}

/** The number after `key` on a "key value" line (memory.events, memory.oom_control); 0 when absent. */
function counter(text: string, key: string): number {
  return Number(new RegExp(`^${key} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
}
