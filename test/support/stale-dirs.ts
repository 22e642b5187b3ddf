import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { movedPostgresParent } from "../../tools/infra.js";
import { isProcessAlive, testDataDirPid } from "./names.js";

/** Whether a Postgres still runs on data in `dir` or below it (a postmaster.pid naming a live process). */
function postgresRunsIn(dir: string, depth = 3): boolean {
  if (!existsSync(dir)) return false;
  const pidFile = join(dir, "postmaster.pid");
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    if (Number.isInteger(pid) && pid > 0 && isProcessAlive(pid)) return true;
  }
  return depth > 0 && readdirSync(dir, { withFileTypes: true }).some((entry) => entry.isDirectory() && postgresRunsIn(join(dir, entry.name), depth - 1));
}

/**
 * Removes the throw-away folders of test runs killed before their cleanup ran, with the
 * folders their private Postgres moved to (see `movedPostgresParent`), unless a server still
 * runs on them (theirs stop with the run: tools/stop-with-parent.ts).
 */
export function removeStaleTestDirs(root: string = tmpdir()): void {
  for (const name of readdirSync(root)) {
    const pid = testDataDirPid(name);
    if (pid === undefined || isProcessAlive(pid)) continue;
    const dir = join(root, name);
    try {
      const folders = [dir, ...readdirSync(dir).filter((entry) => entry.startsWith("postgres-")).map((entry) => movedPostgresParent(join(dir, entry)))];
      if (folders.some((folder) => postgresRunsIn(folder))) continue;
      for (const folder of folders) rmSync(folder, { recursive: true, force: true });
    } catch {
      // Another user's folder, or gone already: not ours to insist on.
    }
  }
}
