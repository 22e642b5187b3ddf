import type { Attributes, Span } from "@opentelemetry/api";

/**
 * Sets attributes on a span that records. Without an exporter spans do not record
 * (telemetry.ts), yet attributes handed to `startSpan` are still copied and checked value
 * by value on every call; set here, they cost nothing then. Samplers do not see them.
 */
export function setRecordedAttributes(span: Span, attributes: () => Attributes): void {
  if (span.isRecording()) span.setAttributes(attributes());
}
