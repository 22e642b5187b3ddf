import { create } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Type } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { FieldPathElementSchema, ViolationSchema, ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

export interface FieldProblem {
  /** e.g. [["items", 2, 1], ["sku", 1]]: field name, number and, for a list element, its index. */
  path: Array<[name: string, fieldNumber: number, index?: number]>;
  ruleId: string;
  message: string;
}

/**
 * A ConnectError carrying buf.validate.Violations details, the same shape the
 * validation interceptor returns, for checks that need data (unknown SKUs...).
 */
export function fieldError(code: Code, message: string, problems: FieldProblem[]): ConnectError {
  const violations = create(ViolationsSchema, {
    violations: problems.map((p) =>
      create(ViolationSchema, {
        ruleId: p.ruleId,
        message: p.message,
        field: {
          elements: p.path.map(([fieldName, fieldNumber, index]) =>
            create(FieldPathElementSchema, {
              fieldName,
              fieldNumber,
              fieldType: index === undefined ? FieldDescriptorProto_Type.STRING : FieldDescriptorProto_Type.MESSAGE,
              subscript: index === undefined ? { case: undefined } : { case: "index", value: BigInt(index) },
            }),
          ),
        },
      }),
    ),
  });
  return new ConnectError(message, code, undefined, [{ desc: ViolationsSchema, value: violations }]);
}
