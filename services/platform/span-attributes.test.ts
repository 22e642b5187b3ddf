import { AlwaysOffSampler, InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { describe, expect, it } from "vitest";
import { setRecordedAttributes } from "./span-attributes.js";

describe("setRecordedAttributes", () => {
  it("sets the attributes on a recording span", () => {
    const exporter = new InMemorySpanExporter();
    const span = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }).getTracer("test").startSpan("recorded");
    setRecordedAttributes(span, () => ({ "rpc.method": "GetOrder" }));
    span.end();
    const [finished] = exporter.getFinishedSpans() as ReadableSpan[];
    expect(finished?.attributes).toEqual({ "rpc.method": "GetOrder" });
  });

  it("does not build them for a span that does not record", () => {
    const span = new TracerProvider({ sampler: new AlwaysOffSampler() }).getTracer("test").startSpan("not recorded");
    let built = 0;
    setRecordedAttributes(span, () => {
      built += 1;
      return { "rpc.method": "GetOrder" };
    });
    expect(span.isRecording()).toBe(false);
    expect(built).toBe(0);
  });
});
