// promtool and prometheus for the checks of the chart's alerts and dashboard.
//
// From PATH when both are there; otherwise Debian's `prometheus` package is downloaded and
// unpacked (`apt-get download`, `dpkg-deb -x`) into node_modules/.cache/orderflow-prometheus,
// never installed: installing it would start a Prometheus service on the machine. Its two
// binaries are static Go programs, so unpacked they run as they are.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { findBinary } from "../../tools/binaries.js";
import { repoRoot } from "../../tools/system.js";

export interface PrometheusBinaries {
  promtool: string;
  prometheus: string;
}

const CACHE = join(repoRoot(), "node_modules/.cache/orderflow-prometheus");
const UNPACKED = join(CACHE, "unpacked/usr/bin");
const HINT = "put promtool and prometheus on PATH, or let the tests fetch Debian's package (needs apt-get and dpkg-deb: apt-get install prometheus installs it outright)";

export function prometheusBinaries(): PrometheusBinaries {
  const promtool = findBinary("promtool");
  const prometheus = findBinary("prometheus");
  if (promtool && prometheus) return { promtool, prometheus };
  const unpacked = { promtool: join(UNPACKED, "promtool"), prometheus: join(UNPACKED, "prometheus") };
  if (!existsSync(unpacked.promtool) || !existsSync(unpacked.prometheus)) unpackDebianPackage();
  return unpacked;
}

function unpackDebianPackage(): void {
  if (!findBinary("apt-get") || !findBinary("dpkg-deb") || !findBinary("flock")) throw new Error(`the alert and dashboard checks need Prometheus: ${HINT}`);
  mkdirSync(CACHE, { recursive: true });
  // Test files run in parallel processes: one fetches while the others wait on the lock, then
  // find the binaries there. apt-get update (root only) when the package lists are missing.
  const script = `
    set -e
    [ -x unpacked/usr/bin/promtool ] && [ -x unpacked/usr/bin/prometheus ] && exit 0
    rm -rf download unpacked.tmp && mkdir download && cd download
    apt-get download -q prometheus 2>/dev/null || { [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null && apt-get download -q prometheus; }
    dpkg-deb -x prometheus_*.deb ../unpacked.tmp
    cd .. && rm -rf download && mv unpacked.tmp unpacked`;
  const r = spawnSync("flock", [join(CACHE, "fetch.lock"), "sh", "-c", script], { cwd: CACHE, encoding: "utf8", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  if (r.status !== 0 || !existsSync(join(UNPACKED, "promtool"))) throw new Error(`could not fetch Debian's prometheus package for the alert and dashboard checks (${HINT}):\n${r.stderr}`);
}
