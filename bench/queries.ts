import { concludedOrderIds } from "./database.js";
import type { LoadGenerator } from "./generator-process.js";
import { log } from "./log.js";
import type { BenchOptions } from "./options.js";
import type { UnaryResult } from "./protocol.js";
import type { Endpoints } from "./system-under-test.js";
import { type TransportRuns, unaryJob } from "./transports.js";

/**
 * The query runs on the orders the saga steps confirmed, over gRPC and then Connect: GetOrder
 * with the cache warm (a hundred ids over and over) and cold (each id once), ListOrders; the
 * cached GetOrder under h2load; last, CreateOrder in a closed loop.
 */
export async function runQueries(options: BenchOptions, generator: LoadGenerator, endpoints: Endpoints, transports: TransportRuns, customerPrefix: string, notes: string[]): Promise<UnaryResult[]> {
  const ids = await concludedOrderIds(endpoints.databaseUrl, customerPrefix, 200_000);
  const warmIds = ids.slice(0, Math.max(1, Math.min(100, Math.floor(ids.length / 4))));
  const coldIds = ids.slice(warmIds.length);
  const coldGrpc = coldIds.filter((_, i) => i % 2 === 0);
  const coldConnect = coldIds.filter((_, i) => i % 2 === 1);
  if (ids.length === 0) notes.push("no CONFIRMED orders to query: the GetOrder runs made no calls");
  const queries: UnaryResult[] = [];
  const order = endpoints.address("order");
  for (const protocol of ["grpc", "connect"] as const) {
    log(`queries over ${protocol}: GetOrder warm, GetOrder cold, ListOrders…`);
    queries.push(await generator.run(unaryJob(options, "GetOrder warm", protocol, order, { call: "getOrder", ids: ids.length > 0 ? warmIds : [], once: false })));
    queries.push(await generator.run(unaryJob(options, "GetOrder cold", protocol, order, { call: "getOrder", ids: protocol === "grpc" ? coldGrpc : coldConnect, once: true })));
    queries.push(await generator.run(unaryJob(options, "ListOrders", protocol, order, { call: "listOrders", pageSize: 20 })));
  }
  const warmId = warmIds[0];
  if (warmId !== undefined && ids.length > 0) await transports.getOrder(warmId);
  log("CreateOrder closed loop over gRPC…");
  queries.push(await generator.run(unaryJob(options, "CreateOrder", "grpc", order, { call: "createOrder" })));
  return queries;
}
