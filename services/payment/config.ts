import { z } from "zod";
import { databaseConfigShape, natsConfigShape } from "../platform/config.js";

export const paymentConfigShape = {
  ...databaseConfigShape,
  ...natsConfigShape,
  SEED_DEMO_DATA: z.stringbool().default(false).describe("fund the demo customers' wallets (alice, bob, carol) once"),
  PAYMENT_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(100).describe("saga commands applied per transaction"),
};
