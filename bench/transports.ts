import { create, toBinary } from "@bufbuild/protobuf";
import { HealthCheckRequestSchema } from "../gen/grpc/health/v1/health_pb.js";
import { GetOrderRequestSchema } from "../gen/orderflow/order/v1/order_pb.js";
import { errorMessage } from "../services/platform/errors.js";
import { startEchoServer } from "./echo-process.js";
import type { LoadGenerator } from "./generator-process.js";
import { findH2load, grpcFrame, type H2loadResult, runH2load, runH2loadAlternated } from "./h2load.js";
import { log } from "./log.js";
import type { BenchOptions } from "./options.js";
import type { UnaryJob, UnaryResult, UnaryWorkload } from "./protocol.js";
import type { Endpoints } from "./system-under-test.js";

/**
 * The calls measured in rounds alternated with a cached GetOrder, and how many rounds are kept:
 * a bare grpc-js server's Health/Check (the goal's ceiling) and the order service's own
 * (its server stack at the same minutes of the process's life as its GetOrder), and the bare
 * server again with the services' GC remedies and allocator (how much of the ratio those give).
 */
export const alternatedBareName = "Health/Check bare grpc-js, alternated with GetOrder";
export const alternatedStackName = "Health/Check order service, alternated with GetOrder";
/**
 * The bare grpc-js server given the services' two GC remedies (services/platform/no-pretenuring.ts,
 * rpc/stream-tables.ts) and their memory allocator (tools/allocator.ts).
 */
export const alternatedRemediedName = "Health/Check grpc-js with the services' GC remedies and allocator, alternated with GetOrder";
export const getOrderRounds = 4;

export const healthServiceName = "orderflow.order.v1.OrderService";
const health: UnaryWorkload = { call: "health", service: healthServiceName };
const healthPath = "/grpc.health.v1.Health/Check";
const healthJson = { service: healthServiceName };
const healthBody = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: healthServiceName }));
const getOrderPath = "/orderflow.order.v1.OrderService/GetOrder";

/** h2load's unmeasured run before a measured one (connections, the server's hot paths). */
function h2loadWarmupMs(options: BenchOptions): number {
  return options.mode === "smoke" ? 0 : Math.min(1_000, options.runMs / 3);
}

/**
 * Unmeasured load for a server that has not served these calls yet. A bare server started
 * for its run served 5,600–8,100 Health/Checks a second over its first 1.5 s of load, and
 * 10,700–14,500 over the next 1.5 s; a quick run's 1.5 s measured it at that start.
 */
export function freshServerWarmupMs(options: BenchOptions): number {
  return options.mode === "smoke" ? 0 : 3_000;
}

/** A closed-loop unary run of the Node generator at the run's concurrency and duration, after `warmupMs` of the same load unmeasured. */
export function unaryJob(options: BenchOptions, name: string, protocol: "grpc" | "connect", address: string, workload: UnaryWorkload, warmupMs = 0): UnaryJob {
  return { kind: "unary", name, protocol, address, url: `http://${address}`, concurrency: options.concurrency, durationMs: options.runMs, warmupMs, workload };
}

/**
 * The unary calls measured against a bare grpc-js server: the bare servers themselves, the
 * order service's Health/Check and cached GetOrder, by the Node generator and, where installed,
 * by h2load (which loads the same calls from C on one core).
 */
export class TransportRuns {
  /** What h2load measured, in the order it ran. */
  readonly h2load: H2loadResult[] = [];
  readonly h2loadBinary: string | undefined;

  constructor(
    private readonly options: BenchOptions,
    private readonly generator: LoadGenerator,
    private readonly endpoints: Endpoints,
    private readonly notes: string[],
  ) {
    this.h2loadBinary = options.h2load ? findH2load() : undefined;
    if (!options.h2load) notes.push("h2load turned off (--no-h2load)");
    else if (!this.h2loadBinary) {
      const line = "h2load not found (Debian/Ubuntu: apt-get install -y nghttp2-client): transport figures come from the Node generator only";
      log(line);
      notes.push(line);
    }
  }

  /** The ceiling: a bare grpc-js server's Health/Check. */
  async bareGrpcJs(): Promise<UnaryResult> {
    log("ceiling: bare grpc-js server…");
    const server = await startEchoServer("grpc-js");
    try {
      const address = `127.0.0.1:${server.grpcPort}`;
      const result = await this.generator.run(unaryJob(this.options, "Health/Check bare grpc-js", "grpc", address, health, freshServerWarmupMs(this.options)));
      await this.withH2load("Health/Check bare grpc-js", "grpc", address, healthPath, healthBody, healthJson, server.pid);
      return result;
    } finally {
      await server.stop();
    }
  }

  /** The transport alone (a bare connect-node server) and with the platform's stack (the order service's Health/Check); full runs only. */
  async compare(): Promise<UnaryResult[]> {
    const transport: UnaryResult[] = [];
    if (!this.options.wholeTransportComparison) {
      this.notes.push("quick run: the transport comparison (a bare connect-node server; the order service's Health/Check by the Node generator and over Connect) is left to full runs; the goal's GetOrder and CreateOrder figures are here");
      return transport;
    }
    log("transport: bare connect-node server (gRPC, Connect)…");
    const connectServer = await startEchoServer("connect");
    try {
      const grpc = `127.0.0.1:${connectServer.grpcPort}`;
      const connect = `127.0.0.1:${connectServer.connectPort ?? 0}`;
      transport.push(await this.generator.run(unaryJob(this.options, "Health/Check bare connect-node", "grpc", grpc, health, freshServerWarmupMs(this.options))));
      transport.push(await this.generator.run(unaryJob(this.options, "Health/Check bare connect-node", "connect", connect, health, freshServerWarmupMs(this.options))));
      await this.withH2load("Health/Check bare connect-node", "grpc", grpc, healthPath, healthBody, healthJson, connectServer.pid);
      await this.withH2load("Health/Check bare connect-node", "connect", connect, healthPath, healthBody, healthJson, connectServer.pid);
    } finally {
      await connectServer.stop();
    }
    log("transport: order service's Health/Check (gRPC, Connect)…");
    const order = this.endpoints.address("order");
    const orderPid = this.endpoints.pids.get("order");
    transport.push(await this.generator.run(unaryJob(this.options, "Health/Check order service", "grpc", order, health, freshServerWarmupMs(this.options))));
    transport.push(await this.generator.run(unaryJob(this.options, "Health/Check order service", "connect", order, health, freshServerWarmupMs(this.options))));
    await this.withH2load("Health/Check order service", "grpc", order, healthPath, healthBody, healthJson, orderPid);
    await this.withH2load("Health/Check order service", "connect", order, healthPath, healthBody, healthJson, orderPid);
    return transport;
  }

  /**
   * A cached GetOrder of one order under h2load: over gRPC in rounds alternated with a bare
   * grpc-js server (the goal's figure, so the ratio does not depend on how busy the machine
   * was when each ran) and with the order service's Health/Check (what GetOrder's own work adds
   * to the server stack, read with the process as it is then), then over Connect.
   */
  async getOrder(orderId: string): Promise<void> {
    const order = this.endpoints.address("order");
    const orderPid = this.endpoints.pids.get("order");
    const body = toBinary(GetOrderRequestSchema, create(GetOrderRequestSchema, { orderId }));
    if (!this.h2loadBinary || this.options.mode === "smoke") {
      await this.withH2load("GetOrder warm (one id)", "grpc", order, getOrderPath, body, null, orderPid);
    } else {
      const bare = await startEchoServer("grpc-js");
      const remedied = await startEchoServer("grpc-js-remedied").catch(async (error: unknown) => {
        await bare.stop();
        throw error;
      });
      try {
        const common = { binary: this.h2loadBinary, protocol: "grpc" as const, concurrency: this.options.concurrency, durationMs: Math.max(750, this.options.runMs / 2), warmupMs: 0 };
        const orderServer = orderPid === undefined ? {} : { serverPid: orderPid };
        this.h2load.push(
          ...(await runH2loadAlternated(
            [
              { ...common, name: alternatedBareName, url: `http://127.0.0.1:${bare.grpcPort}${healthPath}`, body: grpcFrame(healthBody), serverPid: bare.pid },
              { ...common, name: alternatedRemediedName, url: `http://127.0.0.1:${remedied.grpcPort}${healthPath}`, body: grpcFrame(healthBody), serverPid: remedied.pid },
              { ...common, name: alternatedStackName, url: `http://${order}${healthPath}`, body: grpcFrame(healthBody), ...orderServer },
              { ...common, name: "GetOrder warm (one id)", url: `http://${order}${getOrderPath}`, body: grpcFrame(body), ...orderServer },
            ],
            getOrderRounds,
          )),
        );
      } catch (error) {
        this.notes.push(`h2load GetOrder beside bare grpc-js: ${errorMessage(error)}`);
      } finally {
        await Promise.all([bare.stop(), remedied.stop()]);
      }
    }
    await this.withH2load("GetOrder warm (one id)", "connect", order, getOrderPath, body, { orderId }, orderPid);
  }

  private async withH2load(name: string, protocol: "grpc" | "connect", address: string, path: string, grpcBody: Uint8Array, json: unknown, serverPid: number | undefined): Promise<void> {
    if (!this.h2loadBinary) return;
    // A smoke run checks that h2load works once, not every transport.
    if (this.options.mode === "smoke" && this.h2load.length > 0) return;
    try {
      this.h2load.push(
        await runH2load({
          binary: this.h2loadBinary,
          name,
          protocol,
          url: `http://${address}${path}`,
          body: protocol === "grpc" ? grpcFrame(grpcBody) : Buffer.from(JSON.stringify(json)),
          concurrency: this.options.concurrency,
          durationMs: this.options.runMs,
          warmupMs: h2loadWarmupMs(this.options),
          ...(serverPid === undefined ? {} : { serverPid }),
        }),
      );
    } catch (error) {
      this.notes.push(`h2load ${name} (${protocol}): ${errorMessage(error)}`);
    }
  }
}
