#!/usr/bin/env node
// Entry point of every npm script that runs the project (`npm start`, `npm test`,
// `npm run bench`, …) on any machine, fresh clone included.
// Plain JavaScript with no dependencies, so it runs on whatever Node >= 18 the
// user has: it installs the project's dependencies when they are missing or out
// of date, re-runs itself under the project's own Node (the node@24
// devDependency), compiles the TypeScript and then runs the command.
//
//   node scripts/bootstrap.mjs start [args]       infra + all services (dist/tools/start.js)
//   node scripts/bootstrap.mjs test [args]        vitest run [args]
//   node scripts/bootstrap.mjs bench [args]       the benchmark (dist/bench/main.js)
//   node scripts/bootstrap.mjs bench-instructions [args]   instructions per saga under callgrind (dist/bench/instructions.js)
//   node scripts/bootstrap.mjs bench-runs [dir]   the table of kept full runs (dist/bench/full-runs-cli.js)
//   node scripts/bootstrap.mjs bench-report <json> [svg]   a saved result's report and plot (dist/bench/report-cli.js)
//   node scripts/bootstrap.mjs dlq [args]         dead letters (dist/tools/dlq.js)
//   node scripts/bootstrap.mjs build              install + compile only
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, realpathSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "node_modules", ".bin");
const projectNode = join(bin, "node");
const minimumMajor = 22;
const [command = "start", ...args] = process.argv.slice(2);
/** The compiled program each command runs (test runs vitest, build nothing). */
const programs = {
  start: { file: "dist/tools/start.js", nodeFlags: ["--enable-source-maps"] },
  bench: { file: "dist/bench/main.js", nodeFlags: [] },
  "bench-instructions": { file: "dist/bench/instructions.js", nodeFlags: [] },
  "bench-runs": { file: "dist/bench/full-runs-cli.js", nodeFlags: [] },
  "bench-report": { file: "dist/bench/report-cli.js", nodeFlags: [] },
  dlq: { file: "dist/tools/dlq.js", nodeFlags: [] },
};
const commands = new Set([...Object.keys(programs), "test", "build"]);

function say(message) {
  process.stderr.write(`[bootstrap] ${message}\n`);
}

function fail(message, code = 1) {
  say(message);
  process.exit(code);
}

function seconds(since) {
  return `${((performance.now() - since) / 1000).toFixed(1)}s`;
}

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Runs a program to completion with inherited output; returns its exit code. */
function run(program, programArgs, env = process.env) {
  const result = spawnSync(program, programArgs, { cwd: root, stdio: "inherit", env });
  if (result.error) fail(`could not run ${program}: ${result.error.message}`);
  if (result.signal) return 130;
  return result.status ?? 1;
}

/** Runs a long-lived program, forwards SIGINT/SIGTERM to it and exits with its code. */
function handOver(program, programArgs, env) {
  const child = spawn(program, programArgs, { cwd: root, stdio: "inherit", env });
  const forward = (signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  process.on("SIGHUP", forward);
  // npm forwards a SIGTERM to the shell it runs scripts with, which does not pass
  // it on: when our parent goes away, stop the child as if we had been told to.
  const parent = process.ppid;
  const watchdog = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watchdog);
    forward("SIGTERM");
  }, 500);
  watchdog.unref();
  child.on("error", (error) => fail(`could not run ${program}: ${error.message}`));
  child.on("exit", (code, signal) => {
    process.exit(code ?? (signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 1));
  });
}

if (!commands.has(command)) fail(`unknown command "${command}": expected one of ${[...commands].join(", ")}`, 2);

const env = { ...process.env, PATH: [bin, process.env.PATH ?? ""].join(delimiter) };

// 1. Dependencies: `npm ci` when node_modules is missing or older than the lock file.
//    Only the outermost bootstrap installs; a re-executed one finds them fresh.
const lockFile = join(root, "package-lock.json");
const installed = join(root, "node_modules", ".package-lock.json");
const installedAt = mtime(installed);
if (installedAt === undefined || installedAt < (mtime(lockFile) ?? 0) || !existsSync(projectNode)) {
  say(installedAt === undefined ? "installing dependencies (npm ci)…" : "package-lock.json changed: reinstalling dependencies (npm ci)…");
  const started = performance.now();
  const npm = process.env.npm_execpath && process.env.npm_execpath.endsWith(".js") ? [process.execPath, [process.env.npm_execpath]] : ["npm", []];
  let code = run(npm[0], [...npm[1], "ci", "--no-audit", "--no-fund"], process.env);
  if (code !== 0) {
    // npm ci refuses a lock file that lacks entries npm install leaves out, such as
    // optional platform packages a registry mirror does not carry; npm install
    // installs the same locked versions without that check.
    say(`npm ci failed (exit ${code}); trying npm install, which keeps the versions in package-lock.json…`);
    code = run(npm[0], [...npm[1], "install", "--no-audit", "--no-fund"], process.env);
    if (code !== 0) fail(`npm install failed (exit ${code}); fix the error above and run again`, code);
  }
  say(`dependencies installed in ${seconds(started)}`);
}

// 2. Node: the project's own (Node 24, a devDependency) whatever Node started npm — on a
// fresh clone npm's PATH had no node_modules/.bin yet. Without it, Node >= 22 will do.
const major = Number(process.versions.node.split(".")[0]);
const onProjectNode = existsSync(projectNode) && realpathSync(projectNode) === realpathSync(process.execPath);
if (existsSync(projectNode) && !onProjectNode) {
  handOver(projectNode, [fileURLToPath(import.meta.url), command, ...args], env);
} else if (major < minimumMajor) {
  fail(`Node ${process.versions.node} is too old and ${projectNode} is missing: run npm ci, or install Node.js >= ${minimumMajor}`);
} else {
  main();
}

/** Newest modification time of the compiler's inputs (sources, tsconfig, installed packages). */
function newestInput() {
  let newest = 0;
  const visit = (path) => {
    let entries;
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "node_modules" && !entry.name.startsWith(".")) visit(full);
      } else if (entry.name.endsWith(".ts")) {
        newest = Math.max(newest, mtime(full) ?? 0);
      }
    }
    newest = Math.max(newest, mtime(path) ?? 0); // a deleted or renamed file changes its folder
  };
  for (const dir of ["gen", "services", "tools", "bench"]) visit(join(root, dir));
  for (const file of ["tsconfig.json", "package.json", "node_modules/.package-lock.json"]) newest = Math.max(newest, mtime(join(root, file)) ?? 0);
  return newest;
}

function main() {
  // 3. Compile when a source is newer than the last successful build (dist/.build-stamp).
  //    ORDERFLOW_REBUILD=1 forces it.
  const stamp = join(root, "dist", ".build-stamp");
  const builtAt = mtime(stamp);
  if (builtAt === undefined || process.env.ORDERFLOW_REBUILD || newestInput() > builtAt) {
    const started = performance.now();
    const startedAt = new Date();
    const code = run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", root], env);
    if (code !== 0) fail(`TypeScript compilation failed (exit ${code})`, code);
    // Stamped with the time the build began: a file saved during the build triggers the next one.
    writeFileSync(stamp, `${startedAt.toISOString()}\n`);
    utimesSync(stamp, startedAt, startedAt);
    if (process.env.ORDERFLOW_VERBOSE) say(`compiled in ${seconds(started)}`);
  }
  const childEnv = { ...env, ORDERFLOW_BUILT: "1" };

  // 4. Run.
  if (command === "build") process.exit(0);
  const program = programs[command];
  if (program) handOver(process.execPath, [...program.nodeFlags, join(root, program.file), ...args], childEnv);
  if (command === "test") handOver(process.execPath, [join(root, "node_modules", "vitest", "vitest.mjs"), "run", ...args], childEnv);
}
