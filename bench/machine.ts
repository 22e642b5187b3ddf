import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { repoRoot } from "../tools/system.js";
import type { MachineFacts } from "./results.js";
import { round } from "./stats.js";

function git(args: string[]): string {
  try {
    return execFileSync("git", args, { cwd: repoRoot(), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}

/** What the run's figures depend on: the machine, the software, the commit, how busy it was. */
export function machineFacts(): MachineFacts {
  const cpuList = cpus();
  return {
    cores: cpuList.length,
    cpuModel: cpuList[0]?.model.trim() ?? "unknown",
    totalMemoryMb: Math.round(totalmem() / 1024 / 1024),
    platform: process.platform,
    kernel: release(),
    node: process.versions.node,
    gitCommit: git(["rev-parse", "--short", "HEAD"]) || "unknown",
    // The bench's own outputs (latest.json, the plot) do not make the code under test dirty.
    gitDirty: git(["status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results"]) !== "",
    date: new Date().toISOString(),
    postgres: "unknown",
    nats: "unknown",
    loadAverageAtStart: loadavg().map((value) => round(value, 2)),
    loadAverageAtEnd: [],
    autogroupScheduling: autogroupScheduling(),
  };
}

/** The malloc a running process uses, from the libraries mapped into it (tools/allocator.ts preloads jemalloc where the host has it). */
export function mappedAllocator(pid: number | undefined, maps = (id: number) => readFileSync(`/proc/${id}/maps`, "utf8")): string {
  if (pid === undefined) return "unknown";
  try {
    const mapped = maps(pid);
    return /\blibjemalloc\b/.test(mapped) ? "jemalloc" : /\blibtcmalloc/.test(mapped) ? "tcmalloc" : "system malloc";
  } catch {
    return "unknown";
  }
}

/** The flags a running node process was started with, between node and its entry point (tools/node-flags.ts); null when unreadable. */
export function nodeFlagsOf(pid: number | undefined, cmdline = (id: number) => readFileSync(`/proc/${id}/cmdline`, "utf8")): string[] | null {
  if (pid === undefined) return null;
  try {
    const args = cmdline(pid).split("\0").slice(1);
    const entry = args.findIndex((arg) => !arg.startsWith("-"));
    return entry === -1 ? args.filter(Boolean) : args.slice(0, entry);
  } catch {
    return null;
  }
}

/** Whether the kernel schedules each session as a group of its own (null: not Linux, or not said). */
export function autogroupScheduling(setting = "/proc/sys/kernel/sched_autogroup_enabled"): boolean | null {
  try {
    const value = readFileSync(setting, "utf8").trim();
    return value === "1" ? true : value === "0" ? false : null;
  } catch {
    return null;
  }
}
