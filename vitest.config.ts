import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["**/node_modules/**", "dist/**", ".data/**", "bench/results/**"],
    // Postgres, Redis, NATS once per run; URLs to the test files via inject("infra").
    globalSetup: ["test/support/global-setup.ts"],
    // End-to-end files start processes: allow for it, but a hung call still fails.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    // Files in parallel in child processes; two at a time on a 2-core machine
    // (each e2e file runs its own services), more where there are more cores.
    pool: "forks",
    maxWorkers: Math.max(2, Math.floor(availableParallelism() / 2)),
    fileParallelism: true,
  },
});
