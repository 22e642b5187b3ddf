import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const flagModule = fileURLToPath(new URL("./no-pretenuring.ts", import.meta.url));

/**
 * A burst in which every object survives, as at a server's start: V8 decides to
 * pretenure the literal's site. The child prints V8's pretenuring decisions.
 */
async function pretenuringDecisions(withModule: boolean): Promise<string[]> {
  const script = `${withModule ? `await import(${JSON.stringify(flagModule)});` : ""}
    const kept = [];
    for (let i = 0; i < 400_000; i++) kept.push({ i, name: "x" + i, list: [i] });
    console.log(kept.length);`;
  const { stdout } = await run(process.execPath, ["--experimental-strip-types", "--no-warnings", "--trace-pretenuring-statistics", "--input-type=module", "-e", script]);
  return stdout.split("\n").filter((line) => line.includes("=> tenure"));
}

describe("no-pretenuring", () => {
  it("keeps V8 from deciding to pretenure an allocation site that it pretenures by default", async () => {
    const [byDefault, withModule] = await Promise.all([pretenuringDecisions(false), pretenuringDecisions(true)]);
    expect(byDefault.length).toBeGreaterThan(0);
    expect(withModule).toEqual([]);
  });
});
