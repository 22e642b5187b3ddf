/** The JetStream bus every OrderFlow service uses. See README.md. */
export { consumerBacklog, type ConsumerRef, unfinished } from "./backlog.js";
export { BUNDLE_TYPE, publishBundled, receivedEntries } from "./bundle.js";
export { decodeMessage, DecodeError, encodeMessage, sagaRegistry } from "./codec.js";
export { startConsumer } from "./consumer.js";
export type { BusConsumer, ConsumerCommonOptions, ConsumerOptions, Delivery, DirectConsumerOptions, InboxConsumerOptions, OutboxWriter } from "./consumer-options.js";
export { getDeadLetter, listDeadLetters, publishDeadLetter, replayAllDeadLetters, replayDeadLetter, type DeadLetter } from "./dlq.js";
export { JetStreamPublisher, type StreamPublisher } from "./jetstream-publisher.js";
export { busMetrics } from "./metrics.js";
export { commandConsumerName, DEFAULT_DLQ, DlqHeader, Header, outboxChannel, streamName, type DlqConfig } from "./names.js";
export { enqueueOutbox, type EnqueueOptions, foldOutbox, type FoldedOutbox, type OutboxInsert, outboxInsert, outboxWritten, type WrittenRow } from "./outbox.js";
export { busHeaders, publishMessages, type OutgoingMessage } from "./publish.js";
export { OutboxRelay, type OutboxRelayOptions } from "./relay.js";
export { busTablesSql, ensureBusTables, pruneInbox } from "./sql.js";
export { deleteStreams, ensureStreams, type EnsureStreamsOptions } from "./streams.js";
export { exportStreamUsage, readStreamUsage, type StreamUsage } from "./stream-usage.js";
export { currentTraceHeaders } from "./trace.js";
