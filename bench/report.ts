// Turns a bench result into the terminal table and the latency-vs-load SVG.
import { slowSecondsCpu, type SlowSecondsCpu } from "./cpu-by-second.js";
import { goalP99Ms } from "./goals.js";
import type { UnaryResult } from "./protocol.js";
import type { BenchResult } from "./results.js";
import { figure, type LatencySummary, milliseconds } from "./stats.js";

function table(headers: string[], rows: (string | number)[][], alignLeft = 1): string {
  const cells = [headers, ...rows.map((row) => row.map(String))];
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? "").length)));
  const line = (row: string[]): string =>
    row.map((cell, column) => (column < alignLeft ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join("  ");
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].map((l) => `  ${l.trimEnd()}`).join("\n");
}

const lat = (l: LatencySummary): string[] => [milliseconds(l.p50), milliseconds(l.p90), milliseconds(l.p99), milliseconds(l.max)];
const errs = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .map(([code, count]) => `${code}:${count}`)
    .join(" ") || "0";

type StandInVisit = NonNullable<BenchResult["saga"]["steps"][number]["autovacuumVisits"]>[number];

/** "+3, +120–129 s": seconds from a step's start, runs of consecutive ones joined; the first five runs. */
function secondRuns(seconds: readonly number[]): string {
  const runs: Array<[number, number]> = [];
  for (const second of seconds) {
    const last = runs.at(-1);
    if (last && second === last[1] + 1) last[1] = second;
    else runs.push([second, second]);
  }
  const shown = runs.slice(0, 5).map(([from, to]) => (from === to ? `+${from}` : `+${from}–${to}`));
  return `${shown.join(", ")}${runs.length > 5 ? ", …" : ""} s`;
}

/** The machine's CPU in a step's slow seconds against the others, and the two processes that rose most. */
function slowSecondsFact({ slow, cpu }: SlowSecondsCpu): string {
  const [machine, ...processes] = cpu;
  const risen = processes.filter((p) => p.name !== "iowait" && p.slow > p.others).slice(0, 2);
  const shown = [machine, ...risen].filter((p) => p !== undefined).map((p) => `${p.name} ${figure(p.slow)} % (${figure(p.others)} %)`);
  return `${slow.length} slow second${slow.length === 1 ? "" : "s"} (p99 over twice the median second's: ${secondRuns(slow)}) — CPU there (in the other seconds): ${shown.join(", ")}`;
}

const standInVisit = (visit: StandInVisit): string =>
  `the autovacuum stand-in analyzed ${visit.tables.length} table${visit.tables.length === 1 ? "" : "s"} from +${(visit.fromStepStartMs / 1_000).toFixed(1)} s for ${Math.round(visit.durationMs)} ms`;

/** "; <label> <value>" when every service has the same value, else each service's; "" when none was recorded. */
function servicesFact(label: string, byService: Record<string, string> | undefined): string {
  const seen = Object.entries(byService ?? {});
  if (seen.length === 0) return "";
  const values = new Set(seen.map(([, value]) => value));
  return values.size === 1 ? `; ${label} ${[...values][0]}` : `; ${label} ${seen.map(([name, value]) => `${name} ${value}`).join(", ")}`;
}

function nodeFlagsText(byService: Record<string, string[] | null> | undefined): Record<string, string> | undefined {
  return byService && Object.fromEntries(Object.entries(byService).map(([name, flags]) => [name, flags === null ? "unknown" : flags.join(" ") || "none"]));
}

export function renderTable(result: BenchResult): string {
  const out: string[] = [];
  const m = result.machine;
  out.push(`OrderFlow bench (${result.mode}) — ${m.date}, commit ${m.gitCommit}${m.gitDirty ? "+dirty" : ""}`);
  out.push(`${m.cores} × ${m.cpuModel}, ${figure(m.totalMemoryMb)} MiB, Node ${m.node}, Postgres ${m.postgres}, NATS ${m.nats}; load average ${m.loadAverageAtStart.join(" ")} at start, ${m.loadAverageAtEnd.join(" ")} at end`);
  const grouping = m.autogroupScheduling ? ", its services in the bench's session (one scheduling group: this kernel groups by session)" : "";
  out.push(`${result.config.target ? `targets ${JSON.stringify(result.config.target)}` : `system started here (tools/system.ts)${grouping}`}; LOG_LEVEL=${result.config.logLevel}${servicesFact("services on", m.servicesAllocator)}${servicesFact("node flags", nodeFlagsText(m.servicesNodeFlags))}; generator: ${result.config.generator}`);
  out.push("");
  out.push("Saga (open loop; latencies in ms; e2e = CreateOrder answered → CONFIRMED seen by the generator)");
  out.push(
    table(
      ["offered/s", "accepted/s", "completed/s", "backlog", "drain s", "errors", "create p50", "p90", "p99", "max", "e2e p50", "p90", "p99", "max", "gen cpu%", "cpu% per service"],
      result.saga.steps.map((s) => [
        figure(s.offeredPerSec),
        figure(s.acceptedPerSec),
        `${figure(s.completedPerSec)}${s.saturated ? " *" : ""}`,
        figure(s.backlogAtEnd),
        `${(s.drainMs / 1000).toFixed(1)}${s.drained ? "" : "!"}`,
        errs(s.createErrors) + (s.dropped > 0 ? ` dropped:${s.dropped}` : ""),
        ...lat(s.createLatency),
        ...lat(s.e2eLatency),
        figure(s.generatorCpuPercent),
        Object.entries(s.serviceCpuPercent)
          .map(([name, cpu]) => `${name.slice(0, 5)} ${Math.round(cpu)}`)
          .join(", "),
      ]),
      0,
    ),
  );
  const saturated = result.saga.steps.filter((s) => s.saturated);
  out.push(
    `  max completed ${figure(result.saga.maxCompletedPerSec)}/s; kept up with ${figure(result.saga.sustainedPerSec)}/s offered` +
      (saturated.length > 0 ? `; * saturated: ${saturated.map((s) => `${figure(s.offeredPerSec)}/s (${s.saturationReason})`).join("; ")}` : "; did not saturate"),
  );
  const queueLines = result.saga.steps
    .map((s) => [s, s.queues.filter((q) => q.peak > 0).slice(0, 3)] as const)
    .filter(([, deepest]) => deepest.length > 0)
    .map(([s, deepest]) => `    ${figure(s.offeredPerSec)}/s: ${deepest.map((q) => `${q.consumer} ${figure(q.peak)}`).join(" · ")}`);
  if (queueLines.length > 0) out.push("  deepest queues (JetStream messages a consumer had not yet acknowledged, peak during the step):", ...queueLines);
  const workLines = result.saga.steps.flatMap(({ offeredPerSec, work }) => {
    if (!work?.perSaga) return [];
    // Runs before it was recorded have no bytes.
    const bytes: number | undefined = work.perSaga.jetstreamBytes;
    const stored = bytes === undefined ? "" : ` (${figure(bytes)} bytes)`;
    return [`    ${figure(offeredPerSec)}/s: ${work.perSaga.jetstreamMessages} JetStream messages${stored}, ${work.perSaga.postgresWrites} Postgres write transactions, ${figure(work.perSaga.postgresWalBytes)} bytes of Postgres WAL`];
  });
  if (workLines.length > 0) out.push("  work per concluded saga (messages stored in the saga's streams; transactions that wrote, relay and sweeps included):", ...workLines);
  const perStepLines = (figures: (step: (typeof result.saga.steps)[number]) => Record<string, number> | null, decimals: number): string[] =>
    result.saga.steps.flatMap((step) => {
      const entries = Object.entries(figures(step) ?? {});
      return entries.length > 0 ? [`    ${figure(step.offeredPerSec)}/s: ${entries.map(([name, value]) => `${name} ${value.toFixed(decimals)}`).join(" · ")}`] : [];
    });
  const cpuLines = perStepLines((step) => step.cpuMsPerSaga, 2);
  if (cpuLines.length > 0) out.push("  CPU per concluded saga (ms of one core, over the step and its drain):", ...cpuLines);
  const wakeUpLines = perStepLines((step) => step.wakeUpsPerSaga, 1);
  if (wakeUpLines.length > 0) out.push("  wake-ups per concluded saga (threads blocked and woken again; machine: all context switches):", ...wakeUpLines);
  const waitLines = perStepLines((step) => step.runQueueWaitPercent, 0);
  if (waitLines.length > 0) out.push("  waiting for a core (% of the step's time its threads were runnable but not running; 100 = one thread all along):", ...waitLines);
  const secondLines = result.saga.steps.flatMap((step) => {
    // Whole seconds of arrivals (the last, partial one holds a few orders), or the first of a shorter step.
    const arrivalSeconds = step.e2eBySecond.slice(0, Math.max(1, Math.floor(step.durationMs / 1_000)));
    const seconds = arrivalSeconds.filter((second) => second.count > 0);
    if (seconds.length === 0) return [];
    const p99s = seconds.map((second) => second.p99);
    const over = p99s.filter((p99) => p99 > goalP99Ms).length;
    const visits = (step.autovacuumVisits ?? []).filter((visit) => visit.tables.length > 0).map(standInVisit);
    const slow = slowSecondsCpu(arrivalSeconds, step.cpuBySecond);
    const facts = [...visits, ...(slow ? [slowSecondsFact(slow)] : [])];
    return [`    ${figure(step.offeredPerSec)}/s: ${milliseconds(Math.min(...p99s))} – ${milliseconds(Math.max(...p99s))}; ${over} of ${seconds.length} seconds over ${goalP99Ms} ms${facts.map((fact) => `; ${fact}`).join("")}`];
  });
  if (secondLines.length > 0) out.push("  end-to-end p99 second by second (orders grouped by the second they were accepted: lowest – highest):", ...secondLines);
  const timed = result.saga.steps.filter((s) => s.stages.some((stage) => stage.count > 0));
  const first = timed[0]?.stages;
  if (first) {
    out.push("");
    out.push("Saga stages (confirmed orders; p50 / p99 ms; when JetStream stored each command and reply, when the order service began each write)");
    out.push(
      table(
        ["service", "stage", ...timed.map((s) => `${figure(s.offeredPerSec)}/s`)],
        first.map((stage, index) => [stage.service, stage.stage, ...timed.map((s) => (s.stages[index] ? `${milliseconds(s.stages[index].p50)} / ${milliseconds(s.stages[index].p99)}` : ""))]),
        2,
      ),
    );
  }
  out.push("");
  out.push("Queries and transports (closed loop; latencies in ms)");
  const unaryRows = (list: UnaryResult[]): (string | number)[][] =>
    list.map((q) => [q.name, q.protocol, q.concurrency, figure(q.perSec), ...lat(q.latency), errs(q.errors) + (q.exhausted ? " (ids ran out)" : ""), figure(q.generatorCpuPercent)]);
  out.push(
    table(
      ["call", "protocol", "conc", "req/s", "p50", "p90", "p99", "max", "errors", "gen cpu%"],
      [...unaryRows(result.queries), ...unaryRows(result.transport), ...unaryRows([result.ceilings.grpcJs])],
      2,
    ),
  );
  if (result.transportH2load.length > 0) {
    out.push("");
    out.push("Transports under h2load (C generator, one thread; gRPC over h2c, Connect over HTTP/1.1 JSON; latencies in ms)");
    out.push(
      table(
        ["call", "protocol", "conc", "req/s", "mean", "max", "failed", "server CPU µs/call"],
        result.transportH2load.map((t) => [t.name, t.protocol, t.concurrency, figure(t.perSec), milliseconds(t.latencyMeanMs), milliseconds(t.latencyMaxMs), t.failed, t.serverCpuUsPerCall === null ? "–" : figure(t.serverCpuUsPerCall)]),
        2,
      ),
    );
  }
  out.push("");
  const c = result.ceilings;
  out.push("Ceilings (same machine, same run)");
  out.push(`  bare @grpc/grpc-js unary (Health/Check, Node generator): ${figure(c.grpcJs.perSec)} req/s`);
  out.push(`  JetStream publish→consume round trips: ${figure(c.jetstream.roundTripMsgsPerSec)} msgs/s (publishes ${figure(c.jetstream.publishMsgsPerSec)}/s; ${figure(c.jetstream.messages)} × ${c.jetstream.payloadBytes} B, ${c.jetstream.window} in flight)`);
  out.push(`  Postgres BEGIN; INSERT; COMMIT at ${c.postgres.connections} connections: ${figure(c.postgres.txPerSec)} tx/s (p99 ${milliseconds(c.postgres.latency.p99)} ms)`);
  out.push("");
  out.push("Ratios (system ÷ ceiling)");
  out.push(table(["figure", "system", "ceiling", "ratio", "note"], result.ratios.map((r) => [r.name, `${figure(r.system)} ${r.unit}`, figure(r.ceiling), r.ratio.toFixed(3), r.note]), 1));
  out.push("");
  out.push("The goal, on this machine in this run");
  const verdict = (met: boolean | null): string => (met === null ? "not measured" : met ? "met" : "not met");
  out.push(table(["goal", "target", "this run", ""], result.goals.map((g) => [g.goal, g.target, g.measured, verdict(g.met)]), 4));
  out.push("");
  out.push("Resident memory per process (MiB)");
  out.push(table(["process", "pid", "idle", "peak sampled", "VmHWM"], result.resources.map((r) => [r.name, r.pid ?? "?", r.idleRssMb ?? "?", r.peakRssMb ?? "?", r.hwmMb ?? "?"]), 1));
  const limited = result.resources.flatMap(({ name, memoryCgroup }) => (memoryCgroup ? [[name, memoryCgroup] as const] : []));
  if (limited.length > 0) {
    out.push("Each service in a memory cgroup at its pod's limit in the chart (--pod-memory; MiB, the cgroup's charge includes page cache)");
    const hits = (count: number | null): string => (count === null ? "not recorded" : String(count));
    out.push(table(["service", "limit", "charged at most", "limit reached", "OOM kills"], limited.map(([name, c]) => [name, c.limitMb, c.peakMb ?? "not recorded", hits(c.limitHits), c.oomKills]), 1));
  }
  const connections = result.postgresConnections;
  if (connections) {
    out.push(`Postgres: the services' ${connections.connections} connections hold ${figure(connections.privateMbTotal)} MiB of private memory, ${connections.privateMbMean} MiB each on average, ${connections.privateMbMax} at most (beside shared_buffers)`);
  }
  if (result.notes.length > 0) {
    out.push("");
    out.push("Notes");
    for (const note of result.notes) out.push(`  - ${note}`);
  }
  return out.join("\n");
}

// ---------------------------------------------------------------- SVG

const escapeXml = (text: string): string => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Latency (p50, p99; log scale) of CreateOrder and of the whole saga against offered load, drawn by hand. */
export function renderSvg(result: BenchResult): string {
  const width = 760;
  const height = 440;
  const left = 70;
  const right = 180;
  const top = 50;
  const bottom = 60;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const steps = result.saga.steps;
  const series = [
    { name: "saga e2e p99", color: "#d62728", dash: "", pick: (s: (typeof steps)[number]) => s.e2eLatency.p99 },
    { name: "saga e2e p50", color: "#d62728", dash: "6 4", pick: (s: (typeof steps)[number]) => s.e2eLatency.p50 },
    { name: "CreateOrder p99", color: "#1f77b4", dash: "", pick: (s: (typeof steps)[number]) => s.createLatency.p99 },
    { name: "CreateOrder p50", color: "#1f77b4", dash: "6 4", pick: (s: (typeof steps)[number]) => s.createLatency.p50 },
  ];
  const values = steps.flatMap((s) => series.map((line) => line.pick(s))).filter((v) => v > 0);
  const minY = 10 ** Math.floor(Math.log10(Math.max(0.1, Math.min(1, ...values))));
  const maxY = 10 ** Math.ceil(Math.log10(Math.max(goalP99Ms, ...values)));
  const maxX = Math.max(1, ...steps.map((s) => s.offeredPerSec)) * 1.05;
  const x = (rate: number): number => left + (rate / maxX) * plotW;
  const y = (value: number): number => top + plotH - ((Math.log10(Math.max(minY, value)) - Math.log10(minY)) / (Math.log10(maxY) - Math.log10(minY))) * plotH;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  const m = result.machine;
  parts.push(`<text x="${left}" y="22" font-size="15" font-weight="bold">OrderFlow: latency against offered load (${escapeXml(result.mode)} run)</text>`);
  parts.push(`<text x="${left}" y="38" fill="#555">${escapeXml(`${m.date.slice(0, 10)}, commit ${m.gitCommit}, ${m.cores} cores, Node ${m.node}; max ${Math.round(result.saga.maxCompletedPerSec)} sagas/s completed`)}</text>`);
  // Grid: decades on y, rate ticks on x.
  for (let decade = minY; decade <= maxY * 1.0001; decade *= 10) {
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(decade).toFixed(1)}" y2="${y(decade).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${(y(decade) + 4).toFixed(1)}" text-anchor="end">${decade >= 1 ? decade : decade.toFixed(1)}</text>`);
  }
  const xStep = niceStep(maxX / 6);
  for (let rate = 0; rate <= maxX; rate += xStep) {
    parts.push(`<line x1="${x(rate).toFixed(1)}" x2="${x(rate).toFixed(1)}" y1="${top}" y2="${top + plotH}" stroke="#eee"/>`);
    parts.push(`<text x="${x(rate).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle">${rate}</text>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${left + plotW / 2}" y="${height - 18}" text-anchor="middle">offered load (orders/s, open loop)</text>`);
  parts.push(`<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>`);
  // The goal: e2e p99 under goalP99Ms at half the target rate.
  if (goalP99Ms >= minY && goalP99Ms <= maxY) {
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(goalP99Ms).toFixed(1)}" y2="${y(goalP99Ms).toFixed(1)}" stroke="#2ca02c" stroke-dasharray="2 3"/>`);
    parts.push(`<text x="${left + plotW - 4}" y="${(y(goalP99Ms) - 4).toFixed(1)}" text-anchor="end" fill="#2ca02c">${goalP99Ms} ms</text>`);
  }
  for (const line of series) {
    const points = steps.filter((s) => line.pick(s) > 0).map((s) => `${x(s.offeredPerSec).toFixed(1)},${y(line.pick(s)).toFixed(1)}`);
    if (points.length > 1) parts.push(`<polyline points="${points.join(" ")}" fill="none" stroke="${line.color}" stroke-width="2"${line.dash ? ` stroke-dasharray="${line.dash}"` : ""}/>`);
    for (const point of points) {
      const [px, py] = point.split(",");
      parts.push(`<circle cx="${px}" cy="${py}" r="3" fill="${line.color}"/>`);
    }
  }
  // Saturated steps.
  for (const step of steps.filter((s) => s.saturated)) {
    parts.push(`<text x="${x(step.offeredPerSec).toFixed(1)}" y="${top + 14}" text-anchor="middle" fill="#d62728">saturated</text>`);
  }
  series.forEach((line, index) => {
    const ly = top + 10 + index * 20;
    parts.push(`<line x1="${left + plotW + 14}" x2="${left + plotW + 44}" y1="${ly}" y2="${ly}" stroke="${line.color}" stroke-width="2"${line.dash ? ` stroke-dasharray="${line.dash}"` : ""}/>`);
    parts.push(`<text x="${left + plotW + 50}" y="${ly + 4}">${escapeXml(line.name)}</text>`);
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  for (const factor of [1, 2, 5, 10]) if (raw <= factor * power) return factor * power;
  return 10 * power;
}
