// An OTLP trace receiver for tests, as an OpenTelemetry Collector would be: OTLP/HTTP with
// JSON bodies on one port (POST /v1/traces) and OTLP/gRPC (TraceService/Export, Protobuf)
// on another. It keeps every span it is sent, with the service that sent it.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { bytesOf, protoFields } from "./protobuf-fields.js";

/** A span as received, whatever the protocol (ids in hex, as OTLP/JSON carries them). */
export interface ReceivedSpan {
  /** The exporting process's `service.name`. */
  service: string;
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, unknown>;
  /** How it arrived. */
  protocol: "http/json" | "grpc";
}

export const SPAN_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;

interface JsonAnyValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonTraces {
  resourceSpans?: Array<{
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: Array<{ spans?: Array<{ traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes?: JsonKeyValue[] }> }>;
  }>;
}

const jsonAttributes = (kvs: JsonKeyValue[] | undefined): Record<string, unknown> =>
  Object.fromEntries((kvs ?? []).map((kv) => [kv.key, kv.value?.stringValue ?? kv.value?.intValue ?? kv.value?.boolValue]));

const text = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString("utf8") : "");
const hex = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString("hex") : "");

/** opentelemetry.proto.common.v1.KeyValue list: key = 1, value = 2 (AnyValue: string 1, bool 2, int 3). */
function protoAttributes(keyValues: Uint8Array[]): Record<string, unknown> {
  return Object.fromEntries(
    keyValues.map((kv) => {
      const fields = protoFields(kv);
      const value = protoFields(bytesOf(fields, 2)[0] ?? new Uint8Array());
      const [number, raw] = value[0] ?? [0, undefined];
      return [text(bytesOf(fields, 1)[0]), number === 1 ? text(raw as Uint8Array) : number === 2 ? raw === 1n : number === 3 ? String(raw) : undefined];
    }),
  );
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  private http: Server | undefined;
  private grpcServer: grpc.Server | undefined;

  /** Starts both intakes; returns their endpoints (OTEL_EXPORTER_OTLP_ENDPOINT values). */
  async start(): Promise<{ httpEndpoint: string; grpcEndpoint: string }> {
    this.http = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const traces = req.url === "/v1/traces" && req.headers["content-type"]?.startsWith("application/json");
        if (traces) this.takeJson(JSON.parse(Buffer.concat(chunks).toString("utf8")) as JsonTraces);
        res.writeHead(traces ? 200 : 404, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => this.http?.listen(0, "127.0.0.1", resolve));
    this.grpcServer = new grpc.Server();
    const raw = (b: Buffer): Buffer => b;
    this.grpcServer.addService(
      { Export: { path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export", requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } },
      {
        Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          this.takeProtobuf(call.request);
          callback(null, Buffer.alloc(0)); // an empty ExportTraceServiceResponse: all accepted
        },
      },
    );
    const grpcPort = await new Promise<number>((resolve, reject) =>
      this.grpcServer?.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
    );
    return { httpEndpoint: `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`, grpcEndpoint: `http://127.0.0.1:${grpcPort}` };
  }

  async stop(): Promise<void> {
    this.grpcServer?.forceShutdown();
    await new Promise<void>((resolve) => (this.http ? this.http.close(() => resolve()) : resolve()));
  }

  private takeJson(body: JsonTraces): void {
    for (const resourceSpans of body.resourceSpans ?? []) {
      const service = String(jsonAttributes(resourceSpans.resource?.attributes)["service.name"]);
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({ service, traceId: span.traceId, spanId: span.spanId, parentSpanId: span.parentSpanId ?? "", name: span.name, kind: span.kind, attributes: jsonAttributes(span.attributes), protocol: "http/json" });
        }
      }
    }
  }

  /** ExportTraceServiceRequest: resource_spans = 1 → resource = 1 (attributes = 1), scope_spans = 2 → spans = 2. */
  private takeProtobuf(request: Uint8Array): void {
    for (const resourceSpans of bytesOf(protoFields(request), 1)) {
      const rs = protoFields(resourceSpans);
      const service = String(protoAttributes(bytesOf(protoFields(bytesOf(rs, 1)[0] ?? new Uint8Array()), 1))["service.name"]);
      for (const scopeSpans of bytesOf(rs, 2)) {
        for (const spanBytes of bytesOf(protoFields(scopeSpans), 2)) {
          // Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, attributes 9.
          const span = protoFields(spanBytes);
          const kind = span.find(([f]) => f === 6)?.[1];
          this.spans.push({
            service,
            traceId: hex(bytesOf(span, 1)[0]),
            spanId: hex(bytesOf(span, 2)[0]),
            parentSpanId: hex(bytesOf(span, 4)[0]),
            name: text(bytesOf(span, 5)[0]),
            kind: typeof kind === "bigint" ? Number(kind) : 0,
            attributes: protoAttributes(bytesOf(span, 9)),
            protocol: "grpc",
          });
        }
      }
    }
  }
}
