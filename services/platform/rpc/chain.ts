import type { Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { Health } from "../../../gen/grpc/health/v1/health_pb.js";
import type { Logger } from "../logger.js";
import { bind, type ServiceBinding } from "./binding.js";
import type { HealthState } from "./health.js";
import { serverErrors, serverMetrics, serverTracing } from "./interceptors.js";
import { rejectNulCharacters } from "./nul-guard.js";
import { reflectionServices } from "./reflection.js";

/**
 * What both transports serve: the service bindings plus Health and reflection,
 * and the one interceptor chain (tracing, metrics, error mapping, extras,
 * validation, strings Postgres cannot hold) that runs around every handler call on either transport.
 */
export interface ServedApi {
  bindings: ServiceBinding[];
  interceptors: Interceptor[];
}

export function servedApi(services: ServiceBinding[], health: HealthState, logger: Logger, extra: Interceptor[] = []): ServedApi {
  const withHealth: ServiceBinding[] = [...services, bind(Health, health.impl())];
  const bindings = [...withHealth, ...reflectionServices(withHealth.map((b) => b.service))];
  return { bindings, interceptors: [serverTracing(), serverMetrics(bindings.map((b) => b.service)), serverErrors(logger), ...extra, createValidateInterceptor(), rejectNulCharacters()] };
}
