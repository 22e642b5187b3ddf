import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceConnectionPids } from "./database.js";
import { connectionsFootprint } from "./resources.js";

const serverUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const database = `orderflow_footprint_${process.pid}`;
const databaseUrl = Object.assign(new URL(serverUrl), { pathname: `/${database}` }).toString();

async function onServer(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

describe("the services' Postgres connections", () => {
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    await onServer(`CREATE DATABASE ${database}`);
    for (const applicationName of ["order", "order-background", "payment", "orderflow-bench-seed"]) {
      const client = new pg.Client({ connectionString: databaseUrl, application_name: applicationName });
      await client.connect();
      await client.query({ name: "numbers", text: "SELECT sum(n) FROM generate_series(1, $1::int) AS n", values: [1000] });
      clients.push(client);
    }
  });

  afterAll(async () => {
    await Promise.all(clients.map((client) => client.end()));
    await onServer(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  });

  it("are the database's client backends but the bench's own, each with its private memory read from /proc", async () => {
    const pids = await serviceConnectionPids(databaseUrl);
    const ours = await Promise.all(clients.map(async (client) => (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid));
    expect(pids.sort()).toEqual(ours.slice(0, 3).sort());
    const footprint = connectionsFootprint(pids);
    expect(footprint?.connections).toBe(3);
    expect(footprint!.privateMbMean).toBeGreaterThan(0);
    expect(footprint!.privateMbMax).toBeGreaterThanOrEqual(footprint!.privateMbMean);
    expect(footprint!.privateMbTotal).toBeCloseTo(footprint!.privateMbMean * 3, 0);
  });

  it("leaves out a pid that is not a Postgres process of this machine", () => {
    expect(connectionsFootprint([process.pid])).toBeNull();
    expect(connectionsFootprint([])).toBeNull();
  });
});
