// Bare servers for the transport ceiling, each its own process (one core, like a
// service): `grpc-js` answers grpc.health.v1.Health/Check through a bare
// @grpc/grpc-js server (`grpc-js-remedied`: the same with the services' GC remedies and allocator,
// see echo-process.ts); `connect` answers the same method through a bare
// connect-node handler, gRPC (h2c) on one port and Connect (HTTP/1.1) on another.
// No interceptors, logging, metrics or tracing: what the transport alone costs.
// Prints one JSON line with its ports, then serves until SIGTERM.
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createHttp2Server, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../gen/grpc/health/v1/health_pb.js";
import { keepStreamTablesUnchained } from "../services/platform/rpc/stream-tables.js";

const mode = process.argv[2];

/** Decodes the request and encodes a fresh answer, as a real handler does. */
function check(request: Uint8Array): Uint8Array {
  fromBinary(HealthCheckRequestSchema, request);
  return toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status: ServingStatus.SERVING }));
}

function listen(server: HttpServer | Http2Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

async function main(): Promise<void> {
  if (mode === "grpc-js" || mode === "grpc-js-remedied") {
    if (mode === "grpc-js-remedied") keepStreamTablesUnchained({ warn: (message) => process.stderr.write(`${message}\n`) });
    const server = new grpc.Server();
    const definition: grpc.ServiceDefinition = {
      Check: {
        path: "/grpc.health.v1.Health/Check",
        requestStream: false,
        responseStream: false,
        requestSerialize: (value: Buffer) => value,
        requestDeserialize: (bytes: Buffer) => bytes,
        responseSerialize: (value: Buffer) => value,
        responseDeserialize: (bytes: Buffer) => bytes,
      },
    };
    const handle: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => callback(null, Buffer.from(check(call.request)));
    server.addService(definition, { Check: handle });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    process.stdout.write(`${JSON.stringify({ grpcPort: port })}\n`);
    process.once("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
    return;
  }
  if (mode === "connect") {
    const handler = connectNodeAdapter({
      routes: (router) =>
        router.service(Health, {
          check: () => create(HealthCheckResponseSchema, { status: ServingStatus.SERVING }),
          list: () => ({ statuses: {} }),
          watch: async function* () {
            yield { status: ServingStatus.SERVING };
          },
        }),
    });
    const h2 = createHttp2Server(handler);
    const h1 = createHttpServer(handler);
    const [grpcPort, connectPort] = [await listen(h2), await listen(h1)];
    process.stdout.write(`${JSON.stringify({ grpcPort, connectPort })}\n`);
    process.once("SIGTERM", () => process.exit(0));
    return;
  }
  process.stderr.write(`usage: echo-server.js grpc-js|grpc-js-remedied|connect (got ${String(mode)})\n`);
  process.exit(2);
}

await main();
