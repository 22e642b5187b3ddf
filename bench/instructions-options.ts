// Command-line flags of `npm run bench:instructions`.
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { positiveInt, positiveSeconds, UsageError } from "./options.js";

export interface InstructionOptions {
  /** Sagas run before counting, so that V8 has compiled the hot paths (slower under valgrind). */
  warmupSagas: number;
  /** Sagas in the counted window. */
  sagas: number;
  /** Arrivals per second: low enough for services running some fifty times slower. */
  ratePerSec: number;
  /** Length of each counted window of unary calls (GetOrder, the bare grpc-js server), and of the unmeasured run before it. */
  callsMs: number;
  /** Length of the idle window whose rate is taken out of the others. */
  idleMs: number;
  outDir: string;
  /** Where callgrind's dumps are kept (callgrind_annotate, kcachegrind); undefined: a temporary folder, removed. */
  dumpsDir: string | undefined;
  help: boolean;
}

export const instructionsUsage = `npm run bench:instructions [-- flags]

Counts the instructions each service, and the bench's own NATS and Redis, execute
per confirmed saga, and per cached GetOrder beside a bare @grpc/grpc-js server's
Health/Check, with every server under valgrind's callgrind: figures that do not
move with how busy the host is.
Needs valgrind (Debian/Ubuntu: apt-get install -y valgrind). About 12 minutes.

  --sagas <n>             sagas in the counted window (default 1000)
  --warmup-sagas <n>      sagas before it, not counted (default 1000)
  --rate <n>              saga arrivals per second (default 10)
  --calls-duration <s>    seconds of each counted run of unary calls, after as
                          long again uncounted (default 60)
  --idle <s>              seconds of the idle window taken out of the others
                          (default 30)
  --out <dir>             results folder (default bench/results)
  --dumps <dir>           keep callgrind's dumps there: service.<pid>.<n> (and
                          nats.…, redis.…, echo.… for the bare server), n = 1
                          the idle window, 2 the sagas', 3 GetOrder's (for
                          callgrind_annotate or kcachegrind)
  --help
`;

export function parseInstructionOptions(argv: readonly string[], root: string): InstructionOptions {
  let values: Partial<Record<"sagas" | "warmup-sagas" | "rate" | "calls-duration" | "idle" | "out" | "dumps", string>> & { help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        sagas: { type: "string" },
        "warmup-sagas": { type: "string" },
        rate: { type: "string" },
        "calls-duration": { type: "string" },
        idle: { type: "string" },
        out: { type: "string" },
        dumps: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError(`${error instanceof Error ? error.message : String(error)}\n\n${instructionsUsage}`);
  }
  const seconds = (flag: "calls-duration" | "idle", fallbackMs: number): number => {
    const raw = values[flag];
    return raw === undefined ? fallbackMs : Math.round(positiveSeconds(`--${flag}`, raw) * 1_000);
  };
  const count = (flag: "sagas" | "warmup-sagas" | "rate", fallback: number): number => {
    const raw = values[flag];
    return raw === undefined ? fallback : positiveInt(`--${flag}`, raw);
  };
  return {
    warmupSagas: count("warmup-sagas", 1_000),
    sagas: count("sagas", 1_000),
    ratePerSec: count("rate", 10),
    callsMs: seconds("calls-duration", 60_000),
    idleMs: seconds("idle", 30_000),
    outDir: values.out ?? join(root, "bench", "results"),
    dumpsDir: values.dumps === undefined ? undefined : resolve(values.dumps),
    help: values.help ?? false,
  };
}
