import { describe, expect, it } from "vitest";
import { runUnder } from "./run-under.js";

describe("runUnder", () => {
  it("puts the command and its arguments after the program it runs under, and leaves them alone without one", () => {
    expect(runUnder(["valgrind", "--tool=callgrind"], "/usr/bin/node", ["--enable-source-maps", "main.js"])).toEqual({
      command: "valgrind",
      args: ["--tool=callgrind", "/usr/bin/node", "--enable-source-maps", "main.js"],
    });
    expect(runUnder([], "/usr/bin/node", ["main.js"])).toEqual({ command: "/usr/bin/node", args: ["main.js"] });
  });
});
