import { z } from "zod";
import { databaseConfigShape, natsConfigShape } from "../platform/config.js";

export const notificationConfigShape = {
  ...databaseConfigShape,
  ...natsConfigShape,
  NOTIFICATION_RETENTION_DAYS: z.coerce
    .number()
    .int()
    .min(0)
    .default(0)
    .describe("notifications recorded longer ago than this are deleted, a minute after start and then once an hour (0 = kept for good)"),
};
