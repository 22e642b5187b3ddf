import { spawn } from "node:child_process";

/**
 * Runs `command` once this process has ended without cancelling it, however it ended (SIGKILL
 * included): a shell in a session of its own waits to read from a pipe only this process
 * holds, and the pipe closes with the process. Meant for a server this process started: its
 * own stop cancels the watch first, so the command never meets a server, or a pid, that is no
 * longer ours. Returns the cancel.
 */
export function stopWithParent(command: readonly [string, ...string[]], ids: { uid?: number; gid?: number } = {}): () => void {
  const [program, ...args] = command;
  const watcher = spawn("sh", ["-c", 'read _; exec "$0" "$@"', program, ...args], { ...ids, detached: true, stdio: ["pipe", "ignore", "ignore"] });
  watcher.once("error", () => undefined);
  // Neither the watcher nor its pipe keeps this process alive.
  watcher.unref();
  const pipe = watcher.stdin;
  if (pipe && "unref" in pipe && typeof pipe.unref === "function") pipe.unref();
  pipe?.on("error", () => undefined);
  let cancelled = false;
  return () => {
    if (cancelled) return;
    cancelled = true;
    watcher.kill("SIGKILL");
  };
}
