import { context, propagation, trace } from "@opentelemetry/api";
import { afterEach, describe, expect, it } from "vitest";
import { spansRecord } from "./span-recording.js";
import { startTelemetry, type Telemetry } from "./telemetry.js";

let telemetry: Telemetry | undefined;
afterEach(async () => {
  await telemetry?.shutdown();
  telemetry = undefined;
  trace.disable();
  propagation.disable();
  context.disable();
});

describe("startTelemetry", () => {
  it("without an exporter, creates spans that record nothing but carry trace ids onward", () => {
    telemetry = startTelemetry("telemetry-test", {});
    const span = trace.getTracer("test").startSpan("work");
    expect(span.isRecording()).toBe(false);
    expect(spansRecord()).toBe(false);
    expect(trace.isSpanContextValid(span.spanContext())).toBe(true);
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(context.active(), span), carrier);
    expect(carrier["traceparent"]).toContain(span.spanContext().traceId);
    span.end();
  });

  it("takes OTEL_TRACES_EXPORTER=none as no exporter: trace ids still carried onward", () => {
    telemetry = startTelemetry("telemetry-test", { OTEL_TRACES_EXPORTER: "none" });
    const span = trace.getTracer("test").startSpan("work");
    expect(span.isRecording()).toBe(false);
    expect(trace.isSpanContextValid(span.spanContext())).toBe(true);
    span.end();
  });

  it("records spans when OTEL_TRACES_SAMPLER asks for it, even without an exporter", () => {
    telemetry = startTelemetry("telemetry-test", { OTEL_TRACES_SAMPLER: "always_on" });
    const span = trace.getTracer("test").startSpan("work");
    expect(span.isRecording()).toBe(true);
    expect(spansRecord()).toBe(true);
    span.end();
  });
});
