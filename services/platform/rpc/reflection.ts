import { create, createRegistry, toBinary, type DescFile, type DescService, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { bind, type ServiceBinding } from "./binding.js";
import * as v1 from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";

type ReflectionVersion = typeof v1 | typeof v1alpha;
type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type Answer = v1.ServerReflectionResponse["messageResponse"];

/** The transitive closure of the files, dependencies first. */
function withDependencies(file: DescFile, seen = new Set<string>()): DescFile[] {
  if (seen.has(file.name)) return [];
  seen.add(file.name);
  return [...file.dependencies.flatMap((dep) => withDependencies(dep, seen)), file];
}

function fileAnswer(file: DescFile | undefined, what: string): Answer {
  if (!file) return { case: "errorResponse", value: create(v1.ErrorResponseSchema, { errorCode: 5, errorMessage: `${what} not found` }) };
  const bytes = withDependencies(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto));
  return { case: "fileDescriptorResponse", value: create(v1.FileDescriptorResponseSchema, { fileDescriptorProto: bytes.reverse() }) };
}

/** The served files and the types they define. */
export interface ServedSchema {
  files: Map<string, DescFile>;
  types: Registry;
  serviceNames: string[];
}

/** Answers one reflection request from the served schema. */
export function answerReflection({ files, types: registry, serviceNames }: ServedSchema, request: Request): Answer {
  const { messageRequest: ask } = request;
  switch (ask.case) {
    case "listServices":
      return { case: "listServicesResponse", value: create(v1.ListServiceResponseSchema, { service: serviceNames.map((name) => ({ name })) }) };
    case "fileByFilename":
      return fileAnswer(files.get(ask.value), `file ${ask.value}`);
    case "fileContainingSymbol": {
      const desc = registry.get(ask.value) ?? registry.get(ask.value.replace(/\.[^.]+$/, ""));
      const file = desc && "file" in desc ? desc.file : undefined;
      return fileAnswer(file, `symbol ${ask.value}`);
    }
    case "fileContainingExtension": {
      const extendee = registry.getMessage(ask.value.containingType);
      const ext = extendee && registry.getExtensionFor(extendee, ask.value.extensionNumber);
      return fileAnswer(ext?.file, `extension ${ask.value.extensionNumber} of ${ask.value.containingType}`);
    }
    case "allExtensionNumbersOfType": {
      const numbers: number[] = [];
      for (const desc of registry) if (desc.kind === "extension" && desc.extendee.typeName === ask.value) numbers.push(desc.number);
      return { case: "allExtensionNumbersResponse", value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: ask.value, extensionNumber: numbers }) };
    }
    default:
      return { case: "errorResponse", value: create(v1.ErrorResponseSchema, { errorCode: 3, errorMessage: "unsupported reflection request" }) };
  }
}

function reflectionImpl(version: ReflectionVersion, schema: ServedSchema): ServiceImpl<typeof v1.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        const answer = answerReflection(schema, request);
        // v1 and v1alpha messages have the same fields; only their type names differ.
        yield create(version.ServerReflectionResponseSchema as typeof v1.ServerReflectionResponseSchema, {
          validHost: request.host,
          originalRequest: request as v1.ServerReflectionRequest,
          messageResponse: answer,
        });
      }
    },
  };
}

/** Server reflection v1 and v1alpha for the given services, so grpcurl and buf curl need no proto files. */
export function reflectionServices(services: DescService[]): ServiceBinding[] {
  const all = [...services, v1.ServerReflection, v1alpha.ServerReflection];
  const files = new Map(all.flatMap((service) => withDependencies(service.file)).map((file) => [file.proto.name, file]));
  const schema: ServedSchema = { files, types: createRegistry(...files.values()), serviceNames: all.map((s) => s.typeName) };
  return [bind(v1.ServerReflection, reflectionImpl(v1, schema)), bind(v1alpha.ServerReflection as unknown as typeof v1.ServerReflection, reflectionImpl(v1alpha, schema))];
}
