import { toJson, type Registry } from "@bufbuild/protobuf";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { decodeMessage, sagaRegistry } from "./codec.js";
import { listDeadLetters, getDeadLetter, replayAllDeadLetters, replayDeadLetter, type DeadLetter } from "./dlq.js";
import { isMissing } from "./missing.js";
import type { DlqConfig } from "./names.js";

export interface DlqCliDeps {
  js: JetStreamClient;
  jsm: JetStreamManager;
  dlq: DlqConfig;
  out: (line: string) => void;
  registry?: Registry;
}

export const DLQ_USAGE = `usage: npm run dlq -- <command>
  list [--limit N] [--json]   dead letters, oldest first: id (DLQ sequence), time, subject, type, deliveries, consumer, error
  show <id>                   one dead letter with its headers and decoded payload
  replay <id> [<id>...]       re-publish to the original subject with the original headers, then remove from the DLQ
  replay --all                replay every dead letter present now
env: NATS_URL (default nats://127.0.0.1:4222), DLQ_STREAM (default DLQ), DLQ_SUBJECT_PREFIX (default dlq)`;

function payloadJson(dl: DeadLetter, registry: Registry): unknown {
  try {
    const message = decodeMessage(dl.type, dl.data, registry);
    const desc = registry.getMessage(message.$typeName);
    return desc ? toJson(desc, message) : null;
  } catch (err) {
    return { undecodable: err instanceof Error ? err.message : String(err), base64: Buffer.from(dl.data).toString("base64") };
  }
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ");
}

/** Runs `dlq <args>`; returns the process exit code. */
export async function runDlqCli(args: readonly string[], deps: DlqCliDeps): Promise<number> {
  try {
    return await run(args, deps);
  } catch (err) {
    if (isMissing(err, "stream")) {
      deps.out(`stream ${deps.dlq.stream} does not exist yet (it is created when a service starts)`);
      return 1;
    }
    throw err;
  }
}

async function run(args: readonly string[], deps: DlqCliDeps): Promise<number> {
  const [command, ...rest] = args;
  const registry = deps.registry ?? sagaRegistry;
  switch (command) {
    case "list": {
      const limitAt = rest.indexOf("--limit");
      const limit = limitAt >= 0 ? Number(rest[limitAt + 1]) : 1000;
      if (!Number.isInteger(limit) || limit <= 0) {
        deps.out("--limit needs a positive integer");
        return 2;
      }
      const letters = await listDeadLetters(deps.jsm, { dlq: deps.dlq, limit });
      if (rest.includes("--json")) {
        for (const dl of letters) {
          const { data, ...meta } = dl;
          deps.out(JSON.stringify({ ...meta, payload: payloadJson({ ...dl, data }, registry) }));
        }
        return 0;
      }
      if (letters.length === 0) {
        deps.out(`no dead letters in ${deps.dlq.stream}`);
        return 0;
      }
      const header = ["ID", "TIME", "SUBJECT", "TYPE", "DELIVERIES", "CONSUMER", "ERROR"];
      const rows = letters.map((dl) => [String(dl.seq), dl.time, dl.subject, dl.type || "-", String(dl.deliveries), dl.consumer, dl.error]);
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
      deps.out(row(header, widths));
      for (const r of rows) deps.out(row(r, widths));
      return 0;
    }
    case "show": {
      const seq = Number(rest[0]);
      if (!Number.isInteger(seq) || seq <= 0) {
        deps.out("show needs a dead-letter id (its DLQ sequence)");
        return 2;
      }
      const dl = await getDeadLetter(deps.jsm, seq, deps.dlq);
      if (!dl) {
        deps.out(`no dead letter ${seq} in ${deps.dlq.stream}`);
        return 1;
      }
      const { data, ...meta } = dl;
      deps.out(JSON.stringify({ ...meta, payload: payloadJson({ ...dl, data }, registry) }, null, 2));
      return 0;
    }
    case "replay": {
      if (rest.length === 0) {
        deps.out("replay needs dead-letter ids or --all");
        return 2;
      }
      if (rest.includes("--all")) {
        const replayed = await replayAllDeadLetters(deps.js, deps.jsm, deps.dlq);
        for (const dl of replayed) deps.out(`replayed ${dl.seq} -> ${dl.subject} (${dl.messageId})`);
        deps.out(`${replayed.length} replayed`);
        return 0;
      }
      let code = 0;
      for (const arg of rest) {
        const seq = Number(arg);
        if (!Number.isInteger(seq) || seq <= 0) {
          deps.out(`not a dead-letter id: ${arg}`);
          code = 2;
          continue;
        }
        try {
          const dl = await replayDeadLetter(deps.js, deps.jsm, seq, deps.dlq);
          deps.out(`replayed ${dl.seq} -> ${dl.subject} (${dl.messageId})`);
        } catch (err) {
          deps.out(err instanceof Error ? err.message : String(err));
          code = 1;
        }
      }
      return code;
    }
    default:
      deps.out(DLQ_USAGE);
      return command === undefined || command === "help" || command === "--help" ? 0 : 2;
  }
}
