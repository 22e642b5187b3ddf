import { describe, expect, it } from "vitest";
import { firstEphemeralPort } from "./ports.js";
import { maxPortOffset, runUnder, serviceTable } from "./system.js";

describe("npm start's ports", () => {
  it("stay below the ephemeral port range at every PORT_OFFSET", () => {
    const ports = serviceTable.flatMap((service) => [service.port, service.metricsPort]);
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of ports) expect(port + maxPortOffset).toBeLessThan(firstEphemeralPort);
  });
});

describe("runUnder", () => {
  it("puts the command and its arguments after the program it runs under, and leaves them alone without one", () => {
    expect(runUnder(["valgrind", "--tool=callgrind"], "/usr/bin/node", ["--enable-source-maps", "main.js"])).toEqual({
      command: "valgrind",
      args: ["--tool=callgrind", "/usr/bin/node", "--enable-source-maps", "main.js"],
    });
    expect(runUnder([], "/usr/bin/node", ["main.js"])).toEqual({ command: "/usr/bin/node", args: ["main.js"] });
  });
});
