import { register } from "node:module";
import { IORedisInstrumentation } from "@opentelemetry/instrumentation-ioredis";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { AlwaysOffSampler, NoopSpanProcessor } from "@opentelemetry/sdk-trace";
import { setSpansRecord } from "./span-recording.js";

export interface Telemetry {
  shutdown(): Promise<void>;
}

function exporterConfigured(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env["OTEL_TRACES_EXPORTER"] || env["OTEL_EXPORTER_OTLP_ENDPOINT"] || env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]);
}

/**
 * OTEL_TRACES_EXPORTER=none means what no exporter means here. Left set, the SDK would make
 * no tracer at all, and spans would carry no trace id to logs and message headers.
 */
function withoutNoneExporter(env: NodeJS.ProcessEnv): void {
  if (env["OTEL_TRACES_EXPORTER"]?.trim() === "none") delete env["OTEL_TRACES_EXPORTER"];
}

/**
 * Starts the OpenTelemetry SDK. Call it before importing anything it instruments
 * (pg, ioredis): entry points import their service module dynamically afterwards.
 * The exporter follows the standard OTEL_* variables; with none set, RPC and
 * message spans are still created (trace ids in logs and message headers) but
 * not recorded (unless OTEL_TRACES_SAMPLER says otherwise) or exported, and pg /
 * ioredis calls are not instrumented.
 */
export function startTelemetry(serviceName: string, env: NodeJS.ProcessEnv = process.env): Telemetry {
  env["OTEL_SERVICE_NAME"] ??= serviceName;
  env["OTEL_METRICS_EXPORTER"] ??= "none";
  env["OTEL_LOGS_EXPORTER"] ??= "none";
  withoutNoneExporter(env);
  const exporting = exporterConfigured(env);
  // Client spans of every pg and ioredis call cost CPU on the hot path; they are
  // only worth it when spans go somewhere.
  if (exporting) register("@opentelemetry/instrumentation/hook.mjs", import.meta.url);
  const sdk = new NodeSDK({
    serviceName: env["OTEL_SERVICE_NAME"],
    instrumentations: exporting ? [new PgInstrumentation({ requireParentSpan: true }), new IORedisInstrumentation({ requireParentSpan: true })] : [],
    // A span nobody exports need not record its name, attributes and times: a non-recording
    // span still carries the trace and span ids that logs and message headers pass on.
    ...(exporting ? {} : { spanProcessors: [new NoopSpanProcessor()], ...(env["OTEL_TRACES_SAMPLER"] ? {} : { sampler: new AlwaysOffSampler() }) }),
  });
  sdk.start();
  setSpansRecord(exporting || Boolean(env["OTEL_TRACES_SAMPLER"]));
  return { shutdown: () => sdk.shutdown() };
}
