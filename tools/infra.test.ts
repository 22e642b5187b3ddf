import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { sharedInfra } from "../test/support/system.js";
import { repoRoot } from "./system.js";
import { findBinary, findPostgresBin } from "./binaries.js";
import { databaseName, ensureDatabase, withDatabase } from "./databases.js";
import { ensureInfra, serverDataDir, startPrivate } from "./infra.js";
import { InfraError } from "./infra-error.js";
import { freePort, isReachable } from "./ports.js";

const dataDir = mkdtempSync(join(tmpdir(), "orderflow-infra-test-"));
// Run as root, Postgres runs as the postgres account, which must reach the folder.
chmodSync(dataDir, 0o755);
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

async function unusedUrls() {
  const [pgPort, redisPort, natsPort] = [await freePort(), await freePort(), await freePort()];
  return {
    databaseUrl: `postgres://postgres@127.0.0.1:${pgPort}/orderflow_infra_test`,
    redisUrl: `redis://127.0.0.1:${redisPort}`,
    natsUrl: `nats://127.0.0.1:${natsPort}`,
  };
}

describe("database URLs", () => {
  it("keep each server's data in .data/<name> on its default port, .data/<name>-<port> on another", () => {
    expect(serverDataDir(".data", "nats", 4222)).toBe(join(".data", "nats"));
    expect(serverDataDir(".data", "postgres", 5432)).toBe(join(".data", "postgres"));
    expect(serverDataDir(".data", "redis", 6679)).toBe(join(".data", "redis-6679"));
  });

  it("swap and read the database name", () => {
    const url = withDatabase("postgres://u:p@db.example:6543/orderflow?sslmode=disable", "orderflow_test_1");
    expect(url).toBe("postgres://u:p@db.example:6543/orderflow_test_1?sslmode=disable");
    expect(databaseName(url)).toBe("orderflow_test_1");
  });
});

describe("ensureInfra", () => {
  it("says in one line what to install when a local server is down and its binary is missing", async () => {
    const urls = await unusedUrls();
    const port = new URL(urls.databaseUrl).port;
    const error = await ensureInfra({ urls, dataDir, searchPath: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InfraError);
    expect((error as Error).message.split("; ")[0]).toBe(
      `Postgres is not reachable at 127.0.0.1:${port} and no postgres binaries were found: install PostgreSQL ≥ 14 (Debian: apt-get install postgresql)`,
    );
    expect((error as Error).message).not.toContain("\n");
  });

  it("says in one line which user Postgres refused and what to set, instead of the driver's message alone", async () => {
    const { databaseUrl } = sharedInfra();
    const url = new URL(databaseUrl);
    url.username = "orderflow_no_such_role";
    const error = await ensureDatabase(url.toString()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InfraError);
    expect((error as Error).message).toMatch(/^Postgres at [^ ]+ refused user orderflow_no_such_role \(.*\): set DATABASE_URL=postgres:\/\/USER:PASSWORD@/);
    expect((error as Error).message).not.toContain("\n");
  });

  it("does not try to start a server for a remote URL", async () => {
    const urls = { ...(await unusedUrls()), redisUrl: "redis://192.0.2.1:6379" };
    const error = await ensureInfra({ urls, dataDir, searchPath: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InfraError);
    expect((error as Error).message).toContain("Redis is not reachable at 192.0.2.1:6379 (REDIS_URL): start it, or point REDIS_URL at a running server");
    expect((error as Error).message).toContain("no nats-server binary was found: install nats-server ≥ 2.9 (Debian: apt-get install nats-server)");
    expect((error as Error).message).not.toContain("\n");
  });

  const haveBinaries = findPostgresBin() !== undefined && findBinary("redis-server") !== undefined && findBinary("nats-server") !== undefined;
  it.skipIf(!haveBinaries)(
    "starts Postgres, Redis and NATS from installed binaries, creates the database, and stops them",
    async () => {
      const urls = await unusedUrls();
      const infra = await ensureInfra({ urls, dataDir });
      try {
        expect([...infra.started].sort()).toEqual(["nats", "postgres", "redis"]);
        const client = new pg.Client({ connectionString: urls.databaseUrl });
        await client.connect();
        const { rows } = await client.query<{ db: string }>("SELECT current_database() AS db");
        await client.end();
        expect(rows[0]?.db).toBe("orderflow_infra_test");
        // Off their default ports each keeps a folder of its own: a second copy shares no data.
        const port = (url: string) => Number(new URL(url).port);
        expect(existsSync(join(dataDir, `postgres-${port(urls.databaseUrl)}`, "PG_VERSION"))).toBe(true);
        expect(existsSync(join(dataDir, `nats-${port(urls.natsUrl)}`, "jetstream"))).toBe(true);
        expect(existsSync(join(dataDir, `redis-${port(urls.redisUrl)}`))).toBe(true);
      } finally {
        await infra.stop();
      }
      for (const url of [urls.databaseUrl, urls.redisUrl, urls.natsUrl]) {
        expect(await isReachable({ host: "127.0.0.1", port: Number(new URL(url).port) })).toBe(false);
      }
    },
    90_000,
  );

  it.skipIf(!findBinary("nats-server"))("starts a private NATS in its starter's process group: a Ctrl-C of the starter's group stops it too", async () => {
    // The starter stands in for a test run or a bench: its own process group, as a terminal's foreground job.
    const script = join(dataDir, "starter.mjs");
    writeFileSync(
      script,
      `import { startPrivate } from ${JSON.stringify(pathToFileURL(join(repoRoot(), "dist", "tools", "infra.js")).href)};
const nats = await startPrivate("nats", ${JSON.stringify(dataDir)});
process.stdout.write(nats.url + "\\n");
setInterval(() => undefined, 60_000);
`,
    );
    const starter = spawn(process.execPath, [script], { detached: true, stdio: ["ignore", "pipe", "inherit"] });
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: starter.stdout }).once("line", resolve);
      starter.once("exit", (code) => reject(new Error(`the starter exited (${code}) before NATS was up`)));
    });
    const port = Number(new URL(url).port);
    expect(await isReachable({ host: "127.0.0.1", port })).toBe(true);
    process.kill(-(starter.pid ?? 0), "SIGINT");
    const deadline = Date.now() + 10_000;
    while ((await isReachable({ host: "127.0.0.1", port })) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await isReachable({ host: "127.0.0.1", port })).toBe(false);
  });

  const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
  it.skipIf(!findPostgresBin() || !asRoot)("leaves no data of a private Postgres behind, also when it had to keep it under /tmp", async () => {
    // mkdtemp's folder is the caller's alone (0700): run as root, Postgres runs as its own
    // account, cannot enter it, and keeps its data in a folder of /tmp named after it.
    const own = mkdtempSync(join(tmpdir(), "orderflow-private-pg-"));
    try {
      const postgres = await startPrivate("postgres", own);
      if (!postgres) throw new Error("no postgres");
      const port = new URL(postgres.url).port;
      const elsewhere = join(tmpdir(), `orderflow-${createHash("sha256").update(join(own, `postgres-${port}`)).digest("hex").slice(0, 10)}`);
      expect(existsSync(elsewhere)).toBe(true);
      await postgres.stop();
      expect(existsSync(elsewhere)).toBe(false);
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  }, 60_000);

  it.skipIf(!findBinary("nats-server"))("starts a private NATS on a free port and stops it", async () => {
    const nats = await startPrivate("nats", dataDir);
    expect(nats).toBeDefined();
    const port = Number(new URL(nats?.url ?? "").port);
    expect(await isReachable({ host: "127.0.0.1", port })).toBe(true);
    await nats?.stop();
    expect(await isReachable({ host: "127.0.0.1", port })).toBe(false);
  });

  it.skipIf(!findBinary("redis-server"))("runs a private Redis under the program it is given, with its environment, and knows the server's pid", async () => {
    const marker = join(dataDir, "under-runner");
    // A runner that notes what it runs and with what environment, then becomes the server (same pid).
    const runner = { commandPrefix: ["/bin/sh", "-c", `echo "$ORDERFLOW_RUNNER_TEST $0" > ${marker} && exec "$0" "$@"`], env: { ORDERFLOW_RUNNER_TEST: "runner-env" }, startTimeoutMs: 20_000 };
    const redis = await startPrivate("redis", dataDir, runner);
    if (!redis) throw new Error("no redis");
    try {
      expect(readFileSync(marker, "utf8").trim()).toBe(`runner-env ${findBinary("redis-server")}`);
      expect(readFileSync(`/proc/${redis.pid}/comm`, "utf8").trim()).toBe("redis-server");
    } finally {
      await redis.stop();
    }
  });

  it.skipIf(!findPostgresBin())("refuses to run a private Postgres under another program", async () => {
    await expect(startPrivate("postgres", dataDir, { commandPrefix: ["valgrind"], startTimeoutMs: 1_000 })).rejects.toThrow(/under no other program/);
  });
});
