import "./no-pretenuring.js";
import type { Server } from "node:http";
import { baseConfigShape, loadConfig } from "./config.js";
import { errorMessage } from "./errors.js";
import { createLogger, type Logger } from "./logger.js";
import { collectProcessMetrics, startMetricsServer } from "./metrics.js";
import type { ServiceBinding } from "./rpc/binding.js";
import { type DependencyCheck, HealthState } from "./rpc/health.js";
import { whenParentDies } from "./parent.js";
import { RpcServer } from "./rpc/server.js";
import { keepStreamTablesUnchained } from "./rpc/stream-tables.js";
import { startTelemetry } from "./telemetry.js";

/** Something running in the background (a consumer, a relay) that stops on shutdown. */
export interface Worker {
  stop(): Promise<void>;
}

/** What a service gives the host once its dependencies are up. */
export interface ServiceParts {
  rpc: ServiceBinding[];
  checks: DependencyCheck[];
  workers?: Worker[];
  /**
   * Called as shutdown begins, before in-flight calls are awaited: ends open
   * server streams (watches), which would otherwise hold the drain until the grace period ends.
   */
  endStreams?(): void;
  /** Closes pools and connections, after RPCs and workers have stopped. */
  close(): Promise<void>;
}

export interface ServiceContext {
  name: string;
  logger: Logger;
}

export interface ServiceModule {
  /** Applies the service's database migrations (no-op without a database). */
  migrate(context: ServiceContext): Promise<void>;
  start(context: ServiceContext): Promise<ServiceParts>;
}

/**
 * Entry point of every service process: telemetry first, then the service
 * module, its RPC server, health, metrics and graceful shutdown.
 * `main.js migrate` applies migrations and exits.
 */
export async function runService(name: string, load: () => Promise<ServiceModule>): Promise<void> {
  const telemetry = startTelemetry(name);
  const config = loadConfig(baseConfigShape);
  const logger = createLogger(name, config.LOG_LEVEL);
  const context: ServiceContext = { name, logger };
  keepStreamTablesUnchained(logger);
  // Until it serves there is nothing to drain: a signal stops it at once. As a container's
  // PID 1 no signal has a default action, so without this a pod stuck connecting or migrating
  // would wait out its whole grace period.
  const beforeUp = (signal: NodeJS.Signals): void => {
    logger.info("stopped before it was up", { signal });
    void telemetry.shutdown().finally(() => process.exit(0));
  };
  process.once("SIGTERM", beforeUp);
  process.once("SIGINT", beforeUp);
  stopWhenParentDies();
  try {
    const service = await load();
    if (process.argv[2] === "migrate") {
      await service.migrate(context);
      await telemetry.shutdown();
      return;
    }
    collectProcessMetrics(config.METRICS_EVENT_LOOP_RESOLUTION_MS);
    const metricsServer = config.METRICS_PORT > 0 ? await startMetricsServer(config.METRICS_PORT) : undefined;
    const parts = await service.start(context);
    const health = new HealthState(parts.rpc.map((b) => b.service.typeName), parts.checks);
    await health.start();
    const server = new RpcServer({ services: parts.rpc, health, logger, port: config.PORT, maxConnectionAgeMs: config.MAX_CONNECTION_AGE_MS, transport: config.RPC_TRANSPORT });
    const port = await server.listen();
    logger.info("service started", { port, rpc_transport: config.RPC_TRANSPORT, metrics_port: config.METRICS_PORT, failing_dependencies: health.failingDependencies });
    process.off("SIGTERM", beforeUp);
    process.off("SIGINT", beforeUp);
    onSignal(logger, async () => {
      health.shutdown();
      parts.endStreams?.();
      await server.close(config.SHUTDOWN_GRACE_MS);
      await Promise.all((parts.workers ?? []).map((worker) => worker.stop()));
      await parts.close();
      await closeServer(metricsServer);
      await telemetry.shutdown();
    });
  } catch (error) {
    logger.error("service failed to start", { error: errorMessage(error), stack: error instanceof Error ? error.stack : undefined });
    await telemetry.shutdown().catch(() => undefined);
    process.exit(1);
  }
}

/**
 * Run by `npm start` or the tests (ORDERFLOW_PARENT_PID), a service stops as on SIGTERM once
 * that process has died — killed with SIGKILL, it could not stop its services itself, and
 * they would keep the ports the next `npm start` needs.
 */
function stopWhenParentDies(): void {
  const parent = Number(process.env["ORDERFLOW_PARENT_PID"]);
  if (Number.isInteger(parent) && parent > 0) whenParentDies(parent, () => process.kill(process.pid, "SIGTERM"));
}

function closeServer(server: Server | undefined): Promise<void> {
  return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
}

function onSignal(logger: Logger, shutdown: () => Promise<void>): void {
  let stopping = false;
  const handle = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    shutdown().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error("shutdown failed", { error: errorMessage(error) });
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", handle);
  process.once("SIGINT", handle);
}
