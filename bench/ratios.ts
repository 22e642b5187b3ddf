import { goalRatio, goalSagasPerSec } from "./goals.js";
import type { H2loadResult } from "./h2load.js";
import type { JetStreamCeilingResult, PgCeilingResult, UnaryResult } from "./protocol.js";
import type { Ratio } from "./results.js";
import { figure, round } from "./stats.js";
import { alternatedBareName, alternatedRemediedName, alternatedStackName, getOrderRounds } from "./transports.js";

export interface RatioInputs {
  queries: UnaryResult[];
  transport: UnaryResult[];
  grpcJs: UnaryResult;
  postgres: PgCeilingResult;
  jetstream: JetStreamCeilingResult;
  transportH2load: H2loadResult[];
  maxCompletedPerSec: number;
}

function ratio(name: string, system: number, ceiling: number, unit: string, note: string): Ratio {
  return { name, system: round(system, 1), ceiling: round(ceiling, 1), ratio: ceiling > 0 ? round(system / ceiling, 3) : 0, unit, note };
}

/** Each of the system's figures beside the ceiling it is measured against. */
export function ratiosOf(inputs: RatioInputs): Ratio[] {
  const { queries, transport, grpcJs, postgres, jetstream, maxCompletedPerSec } = inputs;
  const find = (name: string, protocol: "grpc" | "connect"): UnaryResult | undefined => queries.find((q) => q.name === name && q.protocol === protocol);
  const ratios: Ratio[] = [];
  const vsGrpcJs = (label: string, q: UnaryResult | undefined): void => {
    const note = /^(CreateOrder|GetOrder)/.test(label) ? `goal ≥ ${goalRatio}` : label.startsWith("Health/Check bare") ? "transport alone" : label.startsWith("Health/Check") ? "transport + platform server stack" : "";
    if (q) ratios.push(ratio(`${label} vs bare grpc-js`, q.perSec, grpcJs.perSec, "req/s", note));
  };
  vsGrpcJs("CreateOrder gRPC", find("CreateOrder", "grpc"));
  vsGrpcJs("GetOrder warm gRPC", find("GetOrder warm", "grpc"));
  vsGrpcJs("GetOrder warm Connect", find("GetOrder warm", "connect"));
  vsGrpcJs("GetOrder cold gRPC", find("GetOrder cold", "grpc"));
  vsGrpcJs("ListOrders gRPC", find("ListOrders", "grpc"));
  for (const q of transport) vsGrpcJs(`${q.name} ${q.protocol === "grpc" ? "gRPC" : "Connect"}`, q);
  const perSaga = (ceiling: number, what: string): string => (maxCompletedPerSec > 0 ? `≈ ${round(ceiling / maxCompletedPerSec, 1)} ${what} per saga` : "no saga completed");
  ratios.push(ratio("sagas/s vs Postgres tx/s", maxCompletedPerSec, postgres.txPerSec, "sagas/s", perSaga(postgres.txPerSec, "raw transactions' worth")));
  ratios.push(ratio("sagas/s vs JetStream round trips/s", maxCompletedPerSec, jetstream.roundTripMsgsPerSec, "sagas/s", perSaga(jetstream.roundTripMsgsPerSec, "raw messages' worth")));
  ratios.push(ratio("sagas/s vs the goal", maxCompletedPerSec, goalSagasPerSec, "sagas/s", `goal: ${figure(goalSagasPerSec)} sagas/s completed on one 2-core machine`));
  return [...ratios, ...h2loadRatios(inputs.transportH2load)];
}

/** h2load's figures against its bare grpc-js server's: by requests per second, and by the server's CPU per call. */
function h2loadRatios(runs: H2loadResult[]): Ratio[] {
  const bare = runs.find((t) => t.name === "Health/Check bare grpc-js");
  const alternatedBare = runs.find((t) => t.name === alternatedBareName);
  if (!bare) return [];
  const ratios: Ratio[] = [];
  for (const t of runs) {
    if (t === bare || t === alternatedBare) continue;
    // Measured in rounds alternated with a bare grpc-js server: compared with that one.
    const ceiling = t.alternated && alternatedBare ? alternatedBare : bare;
    const call = `${t.name} ${t.protocol === "grpc" ? "gRPC" : "Connect"} vs bare grpc-js`;
    ratios.push(ratio(`h2load: ${call}`, t.perSec, ceiling.perSec, "req/s", `h2load${h2loadNote(t)}`));
    // The same call as calls per second of the server's CPU: steadier than req/s on a shared machine.
    const bareCpu = ceiling.serverCpuUsPerCall;
    if (bareCpu !== null && t.serverCpuUsPerCall !== null) {
      ratios.push(ratio(`h2load CPU: ${call}`, callsPerCpuSecond(t.serverCpuUsPerCall), callsPerCpuSecond(bareCpu), "calls/CPU-s", `server CPU per call${h2loadNote(t)}`));
    }
  }
  const getOrder = runs.find((t) => t.alternated && t.name.startsWith("GetOrder"));
  const remedied = runs.find((t) => t.name === alternatedRemediedName);
  if (getOrder && remedied) {
    const vs = "GetOrder warm (one id) gRPC vs grpc-js with the services' GC remedies and allocator";
    const note = `, ${getOrderRounds} alternated rounds (median); the GC remedies and allocator on both sides`;
    ratios.push(ratio(`h2load: ${vs}`, getOrder.perSec, remedied.perSec, "req/s", `h2load${note}`));
    if (getOrder.serverCpuUsPerCall !== null && remedied.serverCpuUsPerCall !== null) {
      ratios.push(ratio(`h2load CPU: ${vs}`, callsPerCpuSecond(getOrder.serverCpuUsPerCall), callsPerCpuSecond(remedied.serverCpuUsPerCall), "calls/CPU-s", `server CPU per call${note}`));
    }
  }
  const stack = runs.find((t) => t.name === alternatedStackName);
  if (getOrder?.serverCpuUsPerCall && stack?.serverCpuUsPerCall) {
    ratios.push(
      ratio(
        "h2load CPU: GetOrder warm (one id) vs the order service's Health/Check",
        callsPerCpuSecond(getOrder.serverCpuUsPerCall),
        callsPerCpuSecond(stack.serverCpuUsPerCall),
        "calls/CPU-s",
        `GetOrder's own work on the server stack, ${getOrderRounds} alternated rounds (median)`,
      ),
    );
  }
  return ratios;
}

function callsPerCpuSecond(cpuUsPerCall: number): number {
  return round(1e6 / cpuUsPerCall, 1);
}

/** What an h2load row measures, after "h2load" or "server CPU per call". */
function h2loadNote(t: H2loadResult): string {
  const rounds = t.alternated ? `, ${getOrderRounds} alternated rounds (median)` : "";
  if (t.name.startsWith("GetOrder")) return `${rounds}; goal ≥ ${goalRatio}`;
  if (t.name === alternatedRemediedName) return `${rounds}; transport alone, with the services' GC remedies and allocator`;
  if (t.name.includes("bare")) return `${rounds}; transport alone`;
  return `${rounds}; transport + platform server stack`;
}
