import { z } from "zod";
import { databaseConfigShape, natsConfigShape } from "../platform/config.js";

export const inventoryConfigShape = {
  ...databaseConfigShape,
  ...natsConfigShape,
  SEED_DEMO_DATA: z.stringbool().default(false).describe("insert the demo catalogue if missing"),
};
