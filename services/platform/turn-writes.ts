import type { Writable } from "node:stream";

/**
 * Holds the writes to `socket` until the check phase of this turn of the event loop, so what
 * several callers send in one turn leaves in one system call. A write to a local socket is a
 * system call that also wakes the process reading it; on a busy machine with a process per
 * service, that wake-up costs more than the write.
 */
export function holdWritesForTurn(socket: Writable): void {
  if (socket.writableCorked > 0) return;
  socket.cork();
  setImmediate(() => socket.uncork());
}
