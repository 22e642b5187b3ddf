// Command-line flags of `npm run bench:instructions`.
import { join } from "node:path";
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
  help: boolean;
}

export const instructionsUsage = `npm run bench:instructions [-- flags]

Counts the instructions each service executes per confirmed saga, and per cached
GetOrder beside a bare @grpc/grpc-js server's Health/Check, with every server
under valgrind's callgrind: figures that do not move with how busy the host is.
Needs valgrind (Debian/Ubuntu: apt-get install -y valgrind). About 12 minutes.

  --sagas <n>             sagas in the counted window (default 1000)
  --warmup-sagas <n>      sagas before it, not counted (default 1000)
  --rate <n>              saga arrivals per second (default 10)
  --calls-duration <s>    seconds of each counted run of unary calls, after as
                          long again uncounted (default 60)
  --idle <s>              seconds of the idle window taken out of the others
                          (default 30)
  --out <dir>             results folder (default bench/results)
  --help
`;

export function parseInstructionOptions(argv: readonly string[], root: string): InstructionOptions {
  const options: InstructionOptions = { warmupSagas: 1_000, sagas: 1_000, ratePerSec: 10, callsMs: 60_000, idleMs: 30_000, outDir: join(root, "bench", "results"), help: false };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i] ?? "";
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined || next.startsWith("--")) throw new UsageError(`${name} needs a value`);
      return next;
    };
    switch (name) {
      case "--sagas":
        options.sagas = positiveInt(name, value());
        break;
      case "--warmup-sagas":
        options.warmupSagas = positiveInt(name, value());
        break;
      case "--rate":
        options.ratePerSec = positiveInt(name, value());
        break;
      case "--calls-duration":
        options.callsMs = Math.round(positiveSeconds(name, value()) * 1_000);
        break;
      case "--idle":
        options.idleMs = Math.round(positiveSeconds(name, value()) * 1_000);
        break;
      case "--out":
        options.outDir = value();
        break;
      case "--help":
      case "-h":
        options.help = true;
        break;
      default:
        throw new UsageError(`unknown flag ${JSON.stringify(name)}\n\n${instructionsUsage}`);
    }
  }
  return options;
}
