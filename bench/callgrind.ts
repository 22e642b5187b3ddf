// Counting the instructions a process executes, with valgrind's callgrind: a figure that,
// unlike CPU time, does not change with how busy the machine's host is. The process runs
// under `valgrind --tool=callgrind`; `callgrind_control` zeroes its counts at the start of a
// window and dumps them at its end: the window's count, every thread of the process summed,
// told apart by function in callgrind-costs.ts.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { InfraError } from "../tools/infra-error.js";
import { type Costs, costsOfDump } from "./callgrind-costs.js";

const run = promisify(execFile);

/** The valgrind version line, or an InfraError that says what to install. */
export async function valgrindVersion(): Promise<string> {
  try {
    return (await run("valgrind", ["--version"])).stdout.trim();
  } catch {
    throw new InfraError("valgrind is not installed: it counts the instructions (Debian/Ubuntu: apt-get install -y valgrind)");
  }
}

/**
 * The command prefix that runs a program under callgrind, its dumps written to
 * `<outFilePrefix>.<pid>.<n>`. Without cache simulation (callgrind's default), instructions
 * are the one event it counts.
 */
export function callgrindPrefix(outFilePrefix: string): string[] {
  return ["valgrind", "--tool=callgrind", "--quiet", `--callgrind-out-file=${outFilePrefix}.%p`, `--vgdb-prefix=${vgdbPrefix(outFilePrefix)}`];
}

/** Where valgrind makes the pipes `callgrind_control` talks through: beside the dumps, not in /tmp, which a killed process would leave them in. */
function vgdbPrefix(outFilePrefix: string): string {
  return `${outFilePrefix}-vgdb`;
}

/** One process under callgrind, counted over windows its caller opens and closes. */
export class InstructionCounter {
  private dumps = 0;

  constructor(
    readonly pid: number,
    private readonly outFilePrefix: string,
  ) {}

  /** Starts a window: the counts so far are dropped. */
  async zero(): Promise<void> {
    await this.control("-z");
  }

  /** Ends a window: the instructions since `zero()`, by what ran them. */
  async dump(): Promise<Costs> {
    await this.control("-d");
    this.dumps += 1;
    const file = `${this.outFilePrefix}.${this.pid}.${this.dumps}`;
    if (!existsSync(file)) throw new Error(`callgrind wrote no ${file} for pid ${this.pid}`);
    return costsOfDump(readFileSync(file, "utf8"));
  }

  private async control(flag: string): Promise<void> {
    // A process waiting in the kernel answers once vgdb has woken it, in well under a second.
    await run("callgrind_control", [`--vgdb-prefix=${vgdbPrefix(this.outFilePrefix)}`, flag, String(this.pid)], { timeout: 60_000 });
  }
}
