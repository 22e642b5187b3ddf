// A batch's shared work in a span of its own: in the one message's trace, or linking several.
import { type SpanContext, SpanStatusCode, trace } from "@opentelemetry/api";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { currentSpanContext, inBatchSpan } from "./trace.js";

const exporter = new InMemorySpanExporter();
// SimpleSpanProcessor exports a span asynchronously once it ends; `finished` flushes it first.
const processor = new SimpleSpanProcessor({ exporter });
const sdk = new NodeSDK({ serviceName: "batch-span-test", spanProcessors: [processor], instrumentations: [] });
const tracer = trace.getTracer("test");

beforeAll(() => sdk.start());
afterAll(() => sdk.shutdown());

/** The span context of a finished "message" span, as the consumer's span of a delivery would be. */
function messageSpan(name: string): SpanContext {
  return tracer.startActiveSpan(name, (span) => {
    span.end();
    return currentSpanContext()!;
  });
}

async function finished(name: string) {
  await processor.forceFlush();
  return exporter.getFinishedSpans().find((s) => s.name === name);
}

describe("inBatchSpan", () => {
  it("puts the work of one message in that message's trace, as its child, and makes it the active span", async () => {
    const message = messageSpan("one message");
    const active = await inBatchSpan("apply one", [message], async () => currentSpanContext());
    const span = await finished("apply one");
    expect(span?.spanContext().traceId).toBe(message.traceId);
    expect(span?.parentSpanContext?.spanId).toBe(message.spanId);
    expect(active?.spanId).toBe(span?.spanContext().spanId);
    expect(span?.links).toEqual([]);
  });

  it("starts a new trace for the work of several messages, linking each message's span", async () => {
    const messages = [messageSpan("first"), messageSpan("second"), messageSpan("third")];
    await tracer.startActiveSpan("unrelated active span", async (outer) => {
      await inBatchSpan("apply three", [...messages, undefined], async () => undefined);
      outer.end();
    });
    const span = await finished("apply three");
    expect(span?.parentSpanContext).toBeUndefined();
    expect(messages.map((m) => m.traceId)).not.toContain(span?.spanContext().traceId);
    expect(span?.links.map((l) => l.context.spanId)).toEqual(messages.map((m) => m.spanId));
    expect(span?.attributes["messaging.batch.message_count"]).toBe(4);
  });

  it("marks the span failed and passes the error on", async () => {
    await expect(inBatchSpan("apply failing", [messageSpan("failing message")], () => Promise.reject(new Error("no stock table")))).rejects.toThrow("no stock table");
    expect((await finished("apply failing"))?.status).toEqual({ code: SpanStatusCode.ERROR, message: "no stock table" });
  });
});
