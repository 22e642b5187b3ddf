import { databaseConfigShape, natsConfigShape } from "../platform/config.js";

export const notificationConfigShape = {
  ...databaseConfigShape,
  ...natsConfigShape,
};
