// Runs once per `vitest run`, in the main process: compiles the services when
// vitest was started without `npm test`, makes sure Postgres, Redis and NATS are
// reachable (starting local ones from installed binaries; when that is not
// possible, the tests that need them fail with one line saying what to
// install), drops test databases and removes test folders left by crashed runs, and hands the URLs to
// the test files (inject("infra"), or sharedInfra() from ./system.js).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { dropDatabase, listDatabases, withDatabase } from "../../tools/databases.js";
import { ensureInfra, type InfraUrls, infraUrlsFromEnv, type RunningInfra } from "../../tools/infra.js";
import { InfraError } from "../../tools/infra-error.js";
import { repoRoot } from "../../tools/system.js";
import { isProcessAlive, testDatabasePid, testDatabasePrefix } from "./names.js";
import { removeStaleTestDirs } from "./stale-dirs.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Postgres, Redis and NATS for this run; null when they could not be had (see infraError). */
    infra: InfraUrls | null;
    /** One line saying what is missing, when infra is null. */
    infraError: string | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = repoRoot();
  if (!process.env["ORDERFLOW_BUILT"]) {
    const tsc = spawnSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", root], { stdio: "inherit" });
    if (tsc.status !== 0) throw new Error(`TypeScript compilation failed (tsc exit ${tsc.status}): the end-to-end tests run the compiled services`);
  }
  const urls = infraUrlsFromEnv();
  let infra: RunningInfra;
  try {
    infra = await ensureInfra({ urls, dataDir: join(root, ".data"), ownProcessGroup: false, log: (message) => process.stderr.write(`[infra] ${message}\n`) });
  } catch (error) {
    if (!(error instanceof InfraError)) throw error;
    // Unit tests still run; every test that needs the system fails with this one line.
    process.stderr.write(`\n${error.message}\n\n`);
    project.provide("infra", null);
    project.provide("infraError", error.message);
    return async () => undefined;
  }
  for (const name of await listDatabases(urls.databaseUrl, testDatabasePrefix)) {
    const pid = testDatabasePid(name);
    if (pid !== undefined && !isProcessAlive(pid)) await dropDatabase(withDatabase(urls.databaseUrl, name)).catch(() => undefined);
  }
  removeStaleTestDirs();
  project.provide("infra", urls);
  project.provide("infraError", null);
  return () => infra.stop();
}
