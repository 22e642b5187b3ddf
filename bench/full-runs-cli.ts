// `npm run bench:runs`: prints the Markdown table of every full run in bench/results/
// (or the folder given), for docs/performance-history.md#full-runs.
import { join } from "node:path";
import { repoRoot } from "../tools/system.js";
import { fullRunsTable, readFullRuns } from "./full-runs.js";

process.stdout.write(`${fullRunsTable(readFullRuns(process.argv[2] ?? join(repoRoot(), "bench", "results")))}\n`);
