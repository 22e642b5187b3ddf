// h2load (Debian: nghttp2-client), a C load generator, for the transport
// comparison: it costs far less CPU per request than any Node client, so its
// figures show what the servers can do rather than what the generator can.
// It sends one fixed request body, so it serves calls that repeat the same
// request (Health/Check, GetOrder of one warm id). It sees HTTP statuses but
// not gRPC trailers, so every call it makes has first succeeded through the
// bench's own client.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findBinary } from "../tools/binaries.js";
import { readCpuSeconds } from "./resources.js";
import { round } from "./stats.js";

export interface H2loadResult {
  name: string;
  protocol: "grpc" | "connect";
  /** h2 = HTTP/2 (gRPC, h2c); h1 = HTTP/1.1 (Connect). */
  http: "h2" | "h1";
  concurrency: number;
  durationMs: number;
  requests: number;
  /** Requests that failed, errored, timed out or got a non-2xx status. */
  failed: number;
  perSec: number;
  /** h2load reports min/mean/max per request, not percentiles. */
  latencyMeanMs: number;
  latencyMaxMs: number;
  /**
   * CPU time (user + system, from /proc) the server process spent per succeeded call over
   * the measured run, in µs; null when its pid is unknown (a targeted system on another
   * machine) or it used under 0.1 s (too few clock ticks to divide). Unlike req/s it does
   * not move with what else the machine runs at the time, so ratios of it are steadier.
   */
  serverCpuUsPerCall: number | null;
  /** Set when measured in rounds alternated with another server: each round's CPU per call, the figures above being the median round's. */
  alternated?: { with: string; serverCpuUsPerCallByRound: (number | null)[] };
}

export function findH2load(): string | undefined {
  return findBinary("h2load");
}

/** The 5-byte gRPC length prefix in front of a message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

export interface H2loadRun {
  binary: string;
  name: string;
  protocol: "grpc" | "connect";
  url: string;
  body: Uint8Array;
  concurrency: number;
  durationMs: number;
  /** Unmeasured time at the start (connections, JIT), as a separate h2load run before the measured one. */
  warmupMs: number;
  /** The server's process, for its CPU per call. */
  serverPid?: number;
}

function toMs(value: string | undefined, unit: string | undefined): number {
  const n = Number(value);
  if (!Number.isFinite(n)) return 0;
  return unit === "us" ? n / 1_000 : unit === "s" ? n * 1_000 : n;
}

/** Parses h2load's summary. Exported for the tests. */
export function parseH2load(output: string): { perSec: number; requests: number; failed: number; meanMs: number; maxMs: number } {
  const perSec = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(output)?.[1] ?? Number.NaN);
  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(output);
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  const time = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(output);
  if (!Number.isFinite(perSec) || !requests) throw new Error(`could not read h2load's output: ${output.trim().split("\n").slice(-6).join(" | ")}`);
  const succeeded = Number(requests[4]);
  const non2xx = status ? Number(status[2]) + Number(status[3]) + Number(status[4]) : 0;
  return {
    perSec,
    requests: succeeded - non2xx,
    failed: Number(requests[5]) + Number(requests[6]) + Number(requests[7]) + non2xx,
    meanMs: time ? round(toMs(time[5], time[6]), 3) : 0,
    maxMs: time ? round(toMs(time[3], time[4]), 3) : 0,
  };
}

/** µs of CPU per call between two readings of a process's CPU seconds; null when unknown or under 0.1 s. */
export function cpuPerCall(before: number | undefined, after: number | undefined, calls: number): number | null {
  if (before === undefined || after === undefined || calls <= 0 || after - before < 0.1) return null;
  return round(((after - before) * 1e6) / calls, 1);
}

function h2loadOutput(binary: string, args: string[]): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (text += chunk.toString()));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`h2load exited with ${code}: ${text.trim().split("\n").slice(-3).join(" | ")}`))));
  });
}

/**
 * One h2load run on one thread (one core, like one service process). gRPC goes
 * over HTTP/2 with prior knowledge, 4 connections × concurrency/4 streams;
 * Connect over HTTP/1.1, one request at a time on each of `concurrency` connections.
 */
export async function runH2load(run: H2loadRun): Promise<H2loadResult> {
  const dir = mkdtempSync(join(tmpdir(), "orderflow-h2load-"));
  // Also when the bench is stopped mid-run: its signal handler exits before this run's finally.
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  process.once("exit", removeDir);
  try {
    const bodyFile = join(dir, "body");
    writeFileSync(bodyFile, run.body);
    const durationMs = Math.max(500, Math.round(run.durationMs));
    const request = run.protocol === "grpc" ? ["-H", "content-type: application/grpc", "-H", "te: trailers"] : ["--h1", "-H", "content-type: application/json"];
    const connections = run.protocol === "grpc" ? ["-c", "4", "-m", String(Math.max(1, Math.ceil(run.concurrency / 4)))] : ["-c", String(run.concurrency), "-m", "1"];
    const args = (ms: number) => ["-t", "1", "-D", `${ms}ms`, "-d", bodyFile, ...connections, ...request, run.url];
    // One verbose call first: a failing gRPC call answers HTTP 200 with grpc-status in its
    // headers (trailers-only), which h2load would count as a success.
    const probe = await h2loadOutput(run.binary, ["-v", "-n", "1", "-c", "1", "-d", bodyFile, ...request, run.url]);
    const grpcStatus = /grpc-status: (\d+)/.exec(probe)?.[1];
    const httpStatus = /:status: (\d+)/.exec(probe)?.[1] ?? /HTTP\/1\.1 (\d+)/.exec(probe)?.[1];
    if ((grpcStatus !== undefined && grpcStatus !== "0") || (httpStatus !== undefined && !httpStatus.startsWith("2"))) {
      throw new Error(`the request h2load would repeat fails (HTTP ${httpStatus ?? "?"}${grpcStatus ? `, grpc-status ${grpcStatus}` : ""})`);
    }
    // h2load takes whole milliseconds (a third of a 2 s run is not one).
    const warmupMs = Math.round(run.warmupMs);
    if (warmupMs > 0) await h2loadOutput(run.binary, args(warmupMs));
    const cpuBefore = run.serverPid === undefined ? undefined : readCpuSeconds(run.serverPid);
    const parsed = parseH2load(await h2loadOutput(run.binary, args(durationMs)));
    const cpuAfter = run.serverPid === undefined ? undefined : readCpuSeconds(run.serverPid);
    return {
      name: run.name,
      protocol: run.protocol,
      http: run.protocol === "grpc" ? "h2" : "h1",
      concurrency: run.protocol === "grpc" ? 4 * Math.max(1, Math.ceil(run.concurrency / 4)) : run.concurrency,
      durationMs,
      requests: parsed.requests,
      failed: parsed.failed,
      perSec: round(parsed.perSec, 1),
      latencyMeanMs: parsed.meanMs,
      latencyMaxMs: parsed.maxMs,
      serverCpuUsPerCall: cpuPerCall(cpuBefore, cpuAfter, parsed.requests),
    };
  } finally {
    process.removeListener("exit", removeDir);
    removeDir();
  }
}

/**
 * Runs h2load against several servers in alternated rounds (a, b, a, b, …; the first round
 * warms up and is not kept), so that a ratio between them does not also measure how busy
 * the machine was at two different minutes. Each server's result is its median round by
 * CPU per call (by req/s where the CPU is unknown), with every round's CPU per call beside it.
 */
export async function runH2loadAlternated(runs: readonly H2loadRun[], rounds: number): Promise<H2loadResult[]> {
  const kept = runs.map((): H2loadResult[] => []);
  for (let round = 0; round <= rounds; round++) {
    for (const [i, run] of runs.entries()) {
      const result = await runH2load({ ...run, warmupMs: 0, durationMs: round === 0 ? 1_000 : run.durationMs });
      if (round > 0) kept[i]?.push(result);
    }
  }
  return runs.map((run, i) => {
    const results = kept[i] ?? [];
    const key = (r: H2loadResult) => (r.serverCpuUsPerCall === null ? -r.perSec : r.serverCpuUsPerCall);
    const median = [...results].sort((a, b) => key(a) - key(b))[Math.floor((results.length - 1) / 2)];
    if (!median) throw new Error(`no h2load round of ${run.name}`);
    const others = runs.filter((other) => other !== run).map((other) => other.name);
    return { ...median, alternated: { with: others.join(", "), serverCpuUsPerCallByRound: results.map((r) => r.serverCpuUsPerCall) } };
  });
}
