/**
 * Dead-letter tool: `npm run dlq -- list | show <id> | replay <id...|--all>`.
 * NATS_URL (default nats://127.0.0.1:4222), DLQ_STREAM / DLQ_SUBJECT_PREFIX to pick another DLQ.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { runDlqCli } from "../services/platform/bus/dlq-cli.js";
import { DEFAULT_DLQ } from "../services/platform/bus/names.js";
import { errorMessage } from "../services/platform/errors.js";

async function main(): Promise<number> {
  const servers = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
  let nc;
  try {
    nc = await connect({ servers, timeout: 5000 });
  } catch (err) {
    console.error(`dlq: cannot connect to NATS at ${servers} (set NATS_URL): ${errorMessage(err)}`);
    return 1;
  }
  try {
    const dlq = { stream: process.env["DLQ_STREAM"] ?? DEFAULT_DLQ.stream, subjectPrefix: process.env["DLQ_SUBJECT_PREFIX"] ?? DEFAULT_DLQ.subjectPrefix };
    return await runDlqCli(process.argv.slice(2), { js: jetstream(nc), jsm: await jetstreamManager(nc), dlq, out: (line) => console.log(line) });
  } catch (err) {
    console.error(`dlq: ${errorMessage(err)}`);
    return 1;
  } finally {
    await nc.close();
  }
}

process.exitCode = await main();
