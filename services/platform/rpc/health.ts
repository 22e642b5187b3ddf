import { EventEmitter, on } from "node:events";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Health, type HealthCheckResponse, HealthCheckResponse_ServingStatus as Status, HealthCheckResponseSchema } from "../../../gen/grpc/health/v1/health_pb.js";

export { Status as ServingStatus };

/** A named dependency probe; the service is SERVING only while every probe passes. */
export interface DependencyCheck {
  name: string;
  check(): Promise<boolean>;
}

/**
 * The health entry for liveness probes: SERVING as long as the process answers at all. A
 * dependency's outage takes a pod out of rotation (readiness), and restarting it would not
 * bring Postgres or NATS back — the process reconnects by itself.
 */
export const livenessService = "liveness";

/**
 * grpc.health.v1 state. The overall status ("") and each served service's status
 * follow the dependency probes; shutdown turns them NOT_SERVING so load
 * balancers drain the pod before it stops. `livenessService` stays SERVING.
 */
export class HealthState {
  private readonly statuses = new Map<string, Status>();
  private readonly changes = new EventEmitter();
  private timer: NodeJS.Timeout | undefined;
  private failing: string[] = [];
  private stopped = false;
  private readonly ended = new AbortController();

  constructor(private readonly serviceNames: string[], private readonly checks: DependencyCheck[]) {
    this.changes.setMaxListeners(0);
    this.statuses.set(livenessService, Status.SERVING);
    this.setAll(Status.NOT_SERVING);
  }

  get failingDependencies(): readonly string[] {
    return this.failing;
  }


  /** Probes now and then every intervalMs. */
  async start(intervalMs = 2_000): Promise<void> {
    await this.probe();
    this.timer = setInterval(() => void this.probe(), intervalMs);
    this.timer.unref();
  }

  async probe(): Promise<void> {
    const results = await Promise.all(this.checks.map(async (c) => ((await c.check().catch(() => false)) ? undefined : c.name)));
    this.failing = results.filter((name): name is string => name !== undefined);
    if (!this.stopped) this.setAll(this.failing.length === 0 ? Status.SERVING : Status.NOT_SERVING);
  }

  shutdown(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.setAll(Status.NOT_SERVING);
    // Watchers have now seen NOT_SERVING; end their streams so the server can drain.
    setImmediate(() => this.ended.abort());
  }

  private setAll(status: Status): void {
    for (const name of ["", ...this.serviceNames]) {
      if (this.statuses.get(name) === status) continue;
      this.statuses.set(name, status);
      this.changes.emit("change", name, status);
    }
  }

  private async *watch(service: string, signal: AbortSignal): AsyncGenerator<HealthCheckResponse> {
    let last = this.statuses.get(service) ?? Status.SERVICE_UNKNOWN;
    yield create(HealthCheckResponseSchema, { status: last });
    if (this.stopped) return;
    try {
      for await (const [name, status] of on(this.changes, "change", { signal: AbortSignal.any([signal, this.ended.signal]) }) as AsyncIterable<[string, Status]>) {
        if (name !== service || status === last) continue;
        last = status;
        yield create(HealthCheckResponseSchema, { status });
      }
    } catch (error) {
      if (!this.ended.signal.aborted && !signal.aborted) throw error;
    }
  }

  impl(): ServiceImpl<typeof Health> {
    const known = (service: string): Status => {
      const status = this.statuses.get(service);
      if (status === undefined) throw new ConnectError(`unknown service ${service}`, Code.NotFound);
      return status;
    };
    return {
      check: (request) => create(HealthCheckResponseSchema, { status: known(request.service) }),
      list: () => ({ statuses: Object.fromEntries([...this.statuses].map(([name, status]) => [name, create(HealthCheckResponseSchema, { status })])) }),
      watch: (request, context) => this.watch(request.service, context.signal),
    };
  }
}
