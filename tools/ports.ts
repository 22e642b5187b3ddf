// TCP ports on this machine: a free one to listen on, and whether an endpoint answers.
import { connect, createServer, type AddressInfo } from "node:net";

export interface Endpoint {
  host: string;
  port: number;
}

/** True when something accepts TCP connections at the endpoint. */
export function isReachable({ host, port }: Endpoint, timeoutMs = 1_500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** Ports this process has handed out: a port picked but not yet bound looks free. */
const handedOut = new Set<number>();

/** The lowest port of Linux's ephemeral range (net.ipv4.ip_local_port_range; elsewhere it starts higher). */
export const firstEphemeralPort = 32_768;

/** The part of 20000–31999 this process picks from: its own per vitest worker, so parallel test files cannot pick the same port. */
function portRange(): { from: number; size: number } {
  const worker = Number(process.env["VITEST_POOL_ID"] ?? 0);
  if (!Number.isInteger(worker) || worker < 1 || worker > 8) return { from: 20_000, size: 12_000 };
  return { from: 20_000 + (worker - 1) * 1_500, size: 1_500 };
}

/**
 * A port free to listen on (free when asked; bind soon). Picked at random below Linux's
 * ephemeral range (32768+): a port the kernel hands out as port 0 can be taken by an
 * outgoing connection's local end before the service binds it. Never the same port twice
 * in a process, and under vitest from the worker's own range: two systems that picked the
 * same port before either bound it made start-ups fail with EADDRINUSE under parallel tests.
 */
export async function freePort(): Promise<number> {
  const { from, size } = portRange();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = from + Math.floor(Math.random() * size);
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  return listenOnce(0);
}

function canListen(port: number): Promise<boolean> {
  return listenOnce(port).then(
    () => true,
    () => false,
  );
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const { port: bound } = server.address() as AddressInfo;
      server.close(() => resolve(bound));
    });
  });
}
