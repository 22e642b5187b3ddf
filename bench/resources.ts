// Memory and CPU of processes, read from /proc (Linux). Elsewhere every figure
// is null and the report says so.
import { readdirSync, readFileSync } from "node:fs";
import type { MemoryCgroupUsage } from "../tools/memory-cgroup.js";
import { FamilyCounter } from "./family-counter.js";
import { sum } from "./stats.js";

export interface ProcessMemory {
  rssMb: number;
  hwmMb: number;
}

/** A "<field>: <n> kB" line of a /proc file, in kB; NaN when absent. */
function kbField(text: string, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
}

/** VmRSS and VmHWM (peak RSS) of a process, in MiB; undefined when it cannot be read. */
export function readMemory(pid: number): ProcessMemory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = kbField(status, "VmRSS");
    const hwm = kbField(status, "VmHWM");
    if (!Number.isFinite(rss) || !Number.isFinite(hwm)) return undefined;
    return { rssMb: Math.round((rss / 1024) * 10) / 10, hwmMb: Math.round((hwm / 1024) * 10) / 10 };
  } catch {
    return undefined;
  }
}

/** User + system CPU time of a process so far, in seconds (clock ticks of 1/100 s). */
export function readCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
    return (utime + stime) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Times the threads of a process blocked and were woken again so far (voluntary context
 * switches, summed over /proc/<pid>/task/*): each is a wake-up, which on a virtual machine
 * costs tens of microseconds of CPU beside the work it wakes for.
 */
export function readWakeUps(pid: number): number | undefined {
  return sumOverThreads(pid, "status", (status) => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0));
}

/**
 * Seconds the threads of a process have spent so far runnable but waiting for a core (the run
 * queue's delay, /proc/<pid>/task/*\/schedstat's second field, in ns): the time its work waited
 * for the CPU rather than for I/O or a peer. A thread that has ended takes its share with it.
 */
export function readRunQueueWaitSeconds(pid: number): number | undefined {
  return sumOverThreads(pid, "schedstat", runQueueWaitOf);
}

/** The run-queue delay in a thread's schedstat ("<on-CPU ns> <waiting ns> <timeslices>"), in seconds. */
export function runQueueWaitOf(schedstat: string): number {
  return Number(schedstat.trim().split(" ")[1] ?? 0) / 1e9;
}

/** `read` of each thread's /proc/<pid>/task/<tid>/<file>, summed; undefined when the process is gone. */
function sumOverThreads(pid: number, file: "status" | "schedstat", read: (content: string) => number): number | undefined {
  try {
    let total = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        total += read(readFileSync(`/proc/${pid}/task/${tid}/${file}`, "utf8"));
      } catch {
        // The thread ended since the listing.
      }
    }
    return total;
  } catch {
    return undefined;
  }
}

/** Private memory of a process (Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup), in MiB. */
export function readPrivateMemoryMb(pid: number): number | undefined {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const total = kbField(rollup, "Private_Clean") + kbField(rollup, "Private_Dirty");
    return Number.isFinite(total) ? total / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface DatabaseConnectionsFootprint {
  /** Postgres backends measured: the services' connections. */
  connections: number;
  /** Each backend's private memory (its caches and prepared statements: what a connection costs beside shared_buffers), MiB. */
  privateMbMean: number;
  privateMbMax: number;
  privateMbTotal: number;
}

/** The private memory of the Postgres backends of `pids` found on this machine; null when none is (Postgres elsewhere, or not Linux). */
export function connectionsFootprint(pids: readonly number[]): DatabaseConnectionsFootprint | null {
  const sizes = pids.flatMap((pid) => {
    const size = isPostgres(pid) ? readPrivateMemoryMb(pid) : undefined;
    return size === undefined ? [] : [size];
  });
  if (sizes.length === 0) return null;
  const total = sum(sizes);
  const tenth = (mb: number): number => Math.round(mb * 10) / 10;
  return { connections: sizes.length, privateMbMean: tenth(total / sizes.length), privateMbMax: tenth(Math.max(...sizes)), privateMbTotal: tenth(total) };
}

/** Whether `pid` is a Postgres process of this machine (a pid Postgres reports may be another machine's). */
function isPostgres(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "postgres";
  } catch {
    return false;
  }
}

/** Context switches of the whole machine so far (/proc/stat's ctxt: voluntary or not, every process). */
export function readMachineContextSwitches(): number | undefined {
  try {
    const line = /^ctxt\s+(\d+)/m.exec(readFileSync("/proc/stat", "utf8"))?.[1];
    return line === undefined ? undefined : Number(line);
  } catch {
    return undefined;
  }
}

/** Pids of the processes whose /proc/<pid>/<file> (read as text) satisfies `matches`. */
function pidsWhere(file: "comm" | "cmdline", matches: (content: string) => boolean): number[] {
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (matches(readFileSync(`/proc/${entry}/${file}`, "utf8"))) found.push(Number(entry));
    } catch {
      // Gone.
    }
  }
  return found;
}

/** Pids of processes whose name (/proc/<pid>/comm) is `command`, e.g. every Postgres backend. */
export function pidsOfCommand(command: string): number[] {
  return pidsWhere("comm", (comm) => comm.trim() === command);
}

/**
 * CPU time of the whole machine so far, in seconds summed over cores (/proc/stat): busy (all
 * but idle and I/O wait) and I/O wait (idle with a disk request outstanding — commits stalled
 * on the disk show here, not as busy time).
 */
export function readMachineSeconds(): { busy: number; iowait: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …: busy is everything but idle and iowait.
    const busy = ticks.reduce((total, value, i) => (i === 3 || i === 4 || i > 7 ? total : total + value), 0);
    const iowait = ticks[4] ?? Number.NaN;
    return Number.isFinite(busy) && Number.isFinite(iowait) ? { busy: busy / 100, iowait: iowait / 100 } : undefined;
  } catch {
    return undefined;
  }
}

/** The infrastructure's processes, by name, whose CPU the bench reports beside the services'. */
const infrastructure: Record<string, string> = { postgres: "postgres", nats: "nats-server", redis: "redis-server" };

/** Pids of processes whose command line contains `needle` (for --target: services started elsewhere). */
export function findPids(needle: string): number[] {
  return pidsWhere("cmdline", (cmdline) => cmdline.replaceAll("\0", " ").includes(needle));
}

export interface ServiceFootprint {
  name: string;
  pid: number | null;
  idleRssMb: number | null;
  /** Largest VmRSS sampled while the bench ran. */
  peakRssMb: number | null;
  /** VmHWM at the end: the kernel's own peak RSS of the process. */
  hwmMb: number | null;
  /** The memory cgroup it ran in at its pod's limit (--pod-memory); absent otherwise and in runs before it was recorded. */
  memoryCgroup?: MemoryCgroupUsage;
}

/** Samples VmRSS of each process every `everyMs` and keeps the largest. */
export class ResourceMonitor {
  private readonly idle = new Map<string, number>();
  private readonly peak = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  /** Per counter read and infrastructure family. */
  private readonly families = new Map<string, FamilyCounter>();

  constructor(private readonly pids: ReadonlyMap<string, number | undefined>) {}

  snapshotIdle(): void {
    for (const [name, pid] of this.pids) {
      const memory = pid === undefined ? undefined : readMemory(pid);
      if (memory) this.idle.set(name, memory.rssMb);
    }
  }

  start(everyMs = 250): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  private sample(): void {
    for (const [name, pid] of this.pids) {
      const memory = pid === undefined ? undefined : readMemory(pid);
      if (memory) this.peak.set(name, Math.max(this.peak.get(name) ?? 0, memory.rssMb));
    }
  }

  /**
   * CPU seconds so far of every service, of Postgres, NATS and Redis (all their processes on
   * this machine, summed) and of the whole machine (`machine` busy, `iowait`; all cores), for
   * per-step figures.
   */
  cpu(): Map<string, number> {
    const out = this.perProcess("cpu", readCpuSeconds);
    const machine = readMachineSeconds();
    if (machine) {
      out.set("machine", machine.busy);
      out.set("iowait", machine.iowait);
    }
    return out;
  }

  /** Wake-ups so far (see readWakeUps) of the same processes, and the machine's context switches (`machine`). */
  wakeUps(): Map<string, number> {
    const out = this.perProcess("wake-ups", readWakeUps);
    const machine = readMachineContextSwitches();
    if (machine !== undefined) out.set("machine", machine);
    return out;
  }

  /** Seconds so far the threads of the same processes waited for a core. */
  runQueueWaits(): Map<string, number> {
    return this.perProcess("run-queue waits", readRunQueueWaitSeconds);
  }

  /**
   * `read` of every service, and of Postgres, NATS and Redis (all their processes on this
   * machine, summed, with what processes that have exited counted before kept in).
   */
  private perProcess(counter: "cpu" | "wake-ups" | "run-queue waits", read: (pid: number) => number | undefined): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, pid] of this.pids) {
      const value = pid === undefined ? undefined : read(pid);
      if (value !== undefined) out.set(name, value);
    }
    for (const [name, command] of Object.entries(infrastructure)) {
      const values = new Map<number, number>();
      for (const pid of pidsOfCommand(command)) {
        const value = read(pid);
        if (value !== undefined) values.set(pid, value);
      }
      const key = `${counter} ${name}`;
      let family = this.families.get(key);
      if (!family) this.families.set(key, (family = new FamilyCounter()));
      if (values.size > 0) out.set(name, family.total(values));
    }
    return out;
  }

  /**
   * How much each seconds counter grew between two readings `elapsedMs` apart, in % of that
   * time: of cpu() readings, the % of one core each process used; of runQueueWaits(), the %
   * of the time one of its threads spent waiting for a core (100 = one thread all the time).
   */
  static percentOfElapsed(before: Map<string, number>, after: Map<string, number>, elapsedMs: number): Record<string, number> {
    const out: Record<string, number> = {};
    if (elapsedMs <= 0) return out;
    for (const [name, seconds] of differences(before, after)) out[name] = Math.round((seconds / (elapsedMs / 1_000)) * 1_000) / 10;
    return out;
  }

  /**
   * Milliseconds of CPU each process (and the machine) spent per unit of work — per saga
   * concluded — between two cpu() readings; null when nothing was done.
   */
  static cpuMsPer(before: Map<string, number>, after: Map<string, number>, done: number): Record<string, number> | null {
    const ms = new Map([...differences(before, after)].filter(([name]) => name !== "iowait").map(([name, seconds]) => [name, seconds * 1_000]));
    return perUnit(ms, done, 3);
  }

  /** Wake-ups of each process (context switches of the machine) per saga concluded between two wakeUps() readings. */
  static wakeUpsPer(before: Map<string, number>, after: Map<string, number>, done: number): Record<string, number> | null {
    return perUnit(differences(before, after), done, 1);
  }

  stop(): ServiceFootprint[] {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    return [...this.pids].map(([name, pid]) => {
      const memory = pid === undefined ? undefined : readMemory(pid);
      return {
        name,
        pid: pid ?? null,
        idleRssMb: this.idle.get(name) ?? null,
        peakRssMb: this.peak.get(name) ?? null,
        hwmMb: memory?.hwmMb ?? null,
      };
    });
  }
}

/** Each amount divided by `done`, to `decimals` places; null when nothing was done. */
function perUnit(amounts: Map<string, number>, done: number, decimals: number): Record<string, number> | null {
  if (done <= 0) return null;
  const scale = 10 ** decimals;
  return Object.fromEntries([...amounts].map(([name, amount]) => [name, Math.round((amount * scale) / done) / scale]));
}

/** How much each counter in `after` grew since `before` (names missing from `before` left out). */
function differences(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, end] of after) {
    const start = before.get(name);
    if (start !== undefined) out.set(name, end - start);
  }
  return out;
}
