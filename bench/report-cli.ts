// `npm run bench:report -- <result.json> [plot.svg]`: prints a saved result's terminal report
// and, given a path, draws its latency-vs-load plot there: the report of any kept run, as
// the run printed it, without running it again.
import { readFileSync, writeFileSync } from "node:fs";
import { renderSvg, renderTable } from "./report.js";
import { type BenchResult, checkResult } from "./results.js";

const [file, svgPath] = process.argv.slice(2);
if (!file) {
  process.stderr.write("usage: npm run bench:report -- <result.json> [plot.svg]\n");
  process.exit(2);
}
const result: unknown = JSON.parse(readFileSync(file, "utf8"));
const problems = checkResult(result);
if (problems.length > 0) {
  process.stderr.write(`${file} is not a complete result of this bench: ${problems.slice(0, 5).join("; ")}\n`);
  process.exit(1);
}
process.stdout.write(`${renderTable(result as BenchResult)}\n`);
if (svgPath) writeFileSync(svgPath, renderSvg(result as BenchResult));
