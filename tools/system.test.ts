import { describe, expect, it } from "vitest";
import { firstEphemeralPort } from "./ports.js";
import { maxPortOffset, serviceTable } from "./system.js";

describe("npm start's ports", () => {
  it("stay below the ephemeral port range at every PORT_OFFSET", () => {
    const ports = serviceTable.flatMap((service) => [service.port, service.metricsPort]);
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of ports) expect(port + maxPortOffset).toBeLessThan(firstEphemeralPort);
  });
});
