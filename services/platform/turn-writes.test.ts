import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { holdWritesForTurn } from "./turn-writes.js";

/** Resolves once the event loop has gone round twice. */
const twoTurns = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

describe("holdWritesForTurn", () => {
  it("gathers the turn's writes into one, written in the turn's check phase", async () => {
    const writes: number[] = [];
    const socket = new Writable({
      write(_chunk, _encoding, callback) {
        writes.push(1);
        callback();
      },
      writev(chunks, callback) {
        writes.push(chunks.length);
        callback();
      },
    });
    for (const chunk of ["a", "b", "c"]) {
      holdWritesForTurn(socket);
      socket.write(chunk);
    }
    expect(writes).toEqual([]);
    await twoTurns();
    expect(writes).toEqual([3]);
    expect(socket.writableCorked).toBe(0);
    socket.write("d");
    expect(writes).toEqual([3, 1]);
  });
});
