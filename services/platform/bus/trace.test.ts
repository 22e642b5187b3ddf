// The bus's spans: a batch's shared work in a span of its own (in the one message's trace, or
// linking several), and each message's publishing in a producer span that its consumer continues.
import { type SpanContext, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setSpansRecord } from "../span-recording.js";
import { currentSpanContext, currentTraceHeaders, inBatchSpan, producerSpans } from "./trace.js";

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

describe("producerSpans", () => {
  const traceparentOf = (headers: Record<string, string> | undefined): string[] => (headers?.["traceparent"] ?? "").split("-");

  it("puts each message in a PRODUCER span, the child of its headers' context, and hands that span on", async () => {
    const written = tracer.startActiveSpan("CreateOrder", (span) => {
      span.end();
      return currentTraceHeaders();
    });
    const producing = producerSpans([
      { subject: "fraud.cmd.assess", headers: written, id: "a" },
      { subject: "inventory.cmd.reserve", headers: { ...written, other: "kept" }, id: "b" },
    ]);
    expect(producing.messages.map((m) => m.id)).toEqual(["a", "b"]);
    expect(producing.messages[1]?.headers?.["other"]).toBe("kept");
    producing.end();
    const [, writtenTrace, writtenSpan] = traceparentOf(written);
    for (const [i, subject] of ["fraud.cmd.assess", "inventory.cmd.reserve"].entries()) {
      const span = await finished(`${subject} publish`);
      expect(span?.kind).toBe(SpanKind.PRODUCER);
      expect(span?.parentSpanContext?.spanId).toBe(writtenSpan);
      expect(span?.attributes["messaging.destination.name"]).toBe(subject);
      // The message now carries the producer span: its consumer's span will be that span's child.
      expect(traceparentOf(producing.messages[i]?.headers)).toEqual(["00", writtenTrace, span?.spanContext().spanId, "01"]);
    }
  });

  it("ends the spans of the messages at the positions given, each with its own outcome", async () => {
    const written = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
    const producing = producerSpans(["inventory.cmd.one", "inventory.cmd.two", "inventory.cmd.three"].map((subject) => ({ subject, headers: written })));
    producing.end(undefined, [1]);
    expect((await finished("inventory.cmd.two publish"))?.status.code).toBe(SpanStatusCode.UNSET);
    expect(await finished("inventory.cmd.one publish")).toBeUndefined();
    expect(await finished("inventory.cmd.three publish")).toBeUndefined();
    producing.end(new Error("timeout"), [0, 2]);
    expect((await finished("inventory.cmd.one publish"))?.status).toEqual({ code: SpanStatusCode.ERROR, message: "timeout" });
    expect((await finished("inventory.cmd.three publish"))?.status).toEqual({ code: SpanStatusCode.ERROR, message: "timeout" });
  });

  it("marks the spans failed when the publish failed", async () => {
    const producing = producerSpans([{ subject: "payment.cmd.refund", headers: {} }]);
    producing.end(new Error("no responders"));
    expect((await finished("payment.cmd.refund publish"))?.status).toEqual({ code: SpanStatusCode.ERROR, message: "no responders" });
  });

  it("leaves a message as it was when its span does not record (an unsampled trace)", async () => {
    const unsampled = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00" };
    const message = { subject: "order.evt.confirmed", headers: unsampled };
    const producing = producerSpans([message]);
    expect(producing.messages[0]).toBe(message);
    producing.end();
    expect(await finished("order.evt.confirmed publish")).toBeUndefined();
  });

  it("makes no span at all while the process's spans do not record (no exporter)", async () => {
    setSpansRecord(false);
    try {
      const message = { subject: "order.evt.rejected", headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } };
      const producing = producerSpans([message]);
      expect(producing.messages).toEqual([message]);
      producing.end();
      expect(await finished("order.evt.rejected publish")).toBeUndefined();
    } finally {
      setSpansRecord(true);
    }
  });
});
