import { counter, histogram } from "../platform/metrics.js";

export const notificationMetrics = {
  recorded: counter("notification_recorded_total", "Notifications recorded, by kind", ["kind"]),
  duplicates: counter("notification_duplicates_total", "Order outcomes already notified (a redelivered event, or the same order and kind under another message id)", []),
  watchers: counter("notification_watch_streams_total", "WatchNotifications streams opened", []),
  catchUps: counter("notification_catch_ups_total", "Reads of watched customers' recent notifications after the NATS connection came back (announcements are not kept while disconnected)", []),
  deleted: counter("notification_deleted_total", "Notifications deleted past NOTIFICATION_RETENTION_DAYS", []),
  deliveryLag: histogram("notification_delivery_lag_seconds", "Time from recording a notification to handing it to a watcher", [], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]),
};
