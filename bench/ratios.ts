import { goalRatio, goalSagasPerSec } from "./goals.js";
import type { H2loadResult } from "./h2load.js";
import type { JetStreamCeilingResult, PgCeilingResult, UnaryResult } from "./protocol.js";
import type { Ratio } from "./results.js";
import { figure, round } from "./stats.js";
import { alternatedBareName, getOrderRounds } from "./transports.js";

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
    const note = t.alternated ? `h2load, ${getOrderRounds} alternated rounds (median); goal ≥ ${goalRatio}` : t.name.startsWith("GetOrder") ? `h2load; goal ≥ ${goalRatio}` : t.name.includes("bare") ? "h2load; transport alone" : "h2load; transport + platform server stack";
    const call = `${t.name} ${t.protocol === "grpc" ? "gRPC" : "Connect"} vs bare grpc-js`;
    ratios.push(ratio(`h2load: ${call}`, t.perSec, ceiling.perSec, "req/s", note));
    // The same call as calls per second of the server's CPU: steadier than req/s on a shared machine.
    const bareCpu = ceiling.serverCpuUsPerCall;
    if (bareCpu !== null && t.serverCpuUsPerCall !== null) {
      const cpuNote = t.alternated ? `server CPU per call, ${getOrderRounds} alternated rounds (median); goal ≥ ${goalRatio}` : t.name.startsWith("GetOrder") ? `server CPU per call; goal ≥ ${goalRatio}` : "server CPU per call";
      ratios.push(ratio(`h2load CPU: ${call}`, round(1e6 / t.serverCpuUsPerCall, 1), round(1e6 / bareCpu, 1), "calls/CPU-s", cpuNote));
    }
  }
  return ratios;
}
