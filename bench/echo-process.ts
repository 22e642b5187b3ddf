import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { servicesAllocator } from "../tools/allocator.js";
import { serviceNodeFlags } from "../tools/node-flags.js";
import { runUnder } from "../tools/run-under.js";
import { repoRoot } from "../tools/system.js";
import { sleep } from "./log.js";

/** A bare server (bench/echo-server.ts) running in a process of its own. */
export interface EchoServer {
  grpcPort: number;
  connectPort?: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

/**
 * `grpc-js-remedied`: the bare grpc-js server with the services' GC remedies, pretenuring off
 * from before its first import (as host.ts does) and unchained stream tables, on the services'
 * memory allocator (tools/allocator.ts) and node flags (tools/node-flags.ts). The others keep
 * Node's defaults.
 */
export async function startEchoServer(
  mode: "grpc-js" | "grpc-js-remedied" | "connect",
  runner: { commandPrefix: string[]; nodeFlags?: readonly string[]; startTimeoutMs: number } = { commandPrefix: [], startTimeoutMs: 15_000 },
): Promise<EchoServer> {
  const remedies = mode === "grpc-js-remedied" ? [...serviceNodeFlags, "--import", pathToFileURL(join(repoRoot(), "dist", "services", "platform", "no-pretenuring.js")).href] : [];
  const before = [...remedies, ...(runner.nodeFlags ?? [])];
  const env = mode === "grpc-js-remedied" ? { ...process.env, ...servicesAllocator(process.env).env } : process.env;
  const { command, args } = runUnder(runner.commandPrefix, process.execPath, [...before, join(repoRoot(), "dist", "bench", "echo-server.js"), mode]);
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const line = await Promise.race([
    new Promise<string>((resolve) => createInterface({ input: child.stdout }).once("line", resolve)),
    exited.then(() => {
      throw new Error(`bare ${mode} server exited before it listened`);
    }),
    sleep(runner.startTimeoutMs).then(() => {
      throw new Error(`bare ${mode} server did not start within ${runner.startTimeoutMs / 1000} s`);
    }),
  ]);
  const ports = JSON.parse(line) as { grpcPort: number; connectPort?: number };
  return {
    ...ports,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM");
      await Promise.race([exited, sleep(3_000).then(() => child.kill("SIGKILL"))]);
    },
  };
}
