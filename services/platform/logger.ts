import { trace } from "@opentelemetry/api";
import winston from "winston";

export type Logger = winston.Logger;

/** Adds trace_id / span_id of the active span so logs join up with traces. */
const traceContext = winston.format((info) => {
  const span = trace.getActiveSpan();
  if (span) {
    const { traceId, spanId } = span.spanContext();
    info["trace_id"] = traceId;
    info["span_id"] = spanId;
  }
  return info;
});

export function createLogger(service: string, level = process.env["LOG_LEVEL"] ?? "info"): Logger {
  return winston.createLogger({
    level,
    defaultMeta: { service },
    format: winston.format.combine(traceContext(), winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    transports: [new winston.transports.Console()],
  });
}
