// Config for `npm run test:k8s`: only the offline Kubernetes packaging checks,
// without the root config's global setup (which compiles the services and
// starts Postgres, Redis and NATS for the end-to-end tests). `npm test` runs
// these files too, under the root config.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: fileURLToPath(new URL("../..", import.meta.url)),
  test: {
    include: ["test/k8s/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    pool: "forks",
  },
});
