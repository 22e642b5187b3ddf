import { describe, expect, it } from "vitest";
import { LoadGenerator } from "./generator-process.js";

describe("LoadGenerator", () => {
  it("lets the generator exit by itself when stopped, so that a --cpu-prof profile is written, rather than killing it", async () => {
    const generator = new LoadGenerator();
    await generator.stop();
    expect(generator.killedBy).toBeNull();
    await expect(generator.run({ kind: "stop" })).rejects.toThrow(/not running/);
  }, 15_000);
});
