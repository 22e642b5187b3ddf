import { type ChildProcess, fork } from "node:child_process";
import { join } from "node:path";
import { repoRoot } from "../tools/system.js";
import { sleep } from "./log.js";
import type { Job, JobRequest, JobResponse, JobResult } from "./protocol.js";

type ResultOf<K extends Job["kind"]> = Extract<JobResult, { kind: K }>;

/** The load generator (bench/loadgen.ts) in a child process of its own, given one job at a time. */
export class LoadGenerator {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (result: JobResult) => void; reject: (error: Error) => void }>();
  private readonly child: ChildProcess;
  private exited = false;

  constructor() {
    this.child = fork(join(repoRoot(), "dist", "bench", "loadgen.js"), [], { execPath: process.execPath, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.child.on("message", (response: JobResponse) => {
      const waiter = this.waiting.get(response.id);
      if (!waiter) return;
      this.waiting.delete(response.id);
      if (response.ok) waiter.resolve(response.result);
      else waiter.reject(new Error(`load generator: ${response.error}`));
    });
    this.child.on("exit", (code, signal) => {
      this.exited = true;
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`load generator exited (${signal ?? `code ${code}`})`));
      this.waiting.clear();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The signal that ended the generator's process: null while it runs or when it exited by itself. */
  get killedBy(): NodeJS.Signals | null {
    return this.child.signalCode;
  }

  run<K extends Job["kind"]>(job: Extract<Job, { kind: K }>): Promise<ResultOf<K>> {
    if (this.exited) return Promise.reject(new Error("load generator is not running"));
    const id = ++this.nextId;
    return new Promise<ResultOf<K>>((resolve, reject) => {
      this.waiting.set(id, {
        resolve: (result) => (result.kind === job.kind ? resolve(result as ResultOf<K>) : reject(new Error(`load generator answered ${result.kind} to ${job.kind}`))),
        reject,
      });
      const request: JobRequest = { id, job };
      this.child.send(request);
    });
  }

  /** Asks the generator to stop and waits for it to exit (so that `--cpu-prof` can write its profile); kills it after 3 s of either. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    await Promise.race([this.run({ kind: "stop" }).catch(() => undefined), sleep(3_000)]);
    await Promise.race([exited, sleep(3_000)]);
    if (!this.exited) this.child.kill("SIGKILL");
  }
}
