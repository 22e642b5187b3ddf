let recording = true;

/**
 * Whether this process's spans record: startTelemetry says so once, from the exporter and
 * sampler configured. Where a span exists only to be seen (a message's publishing), code
 * that runs per message skips it when they do not. Until told, spans are taken to record.
 */
export function spansRecord(): boolean {
  return recording;
}

export function setSpansRecord(record: boolean): void {
  recording = record;
}
