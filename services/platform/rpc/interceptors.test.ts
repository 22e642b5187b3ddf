import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { InventoryService } from "../../../gen/orderflow/inventory/v1/inventory_pb.js";
import { createLogger } from "../logger.js";
import { serverErrors } from "./interceptors.js";

/** The code a caller gets when GetProduct throws `error` behind serverErrors. */
async function codeFor(error: unknown): Promise<Code> {
  const transport = createRouterTransport(
    (router) =>
      router.service(InventoryService, {
        getProduct: () => {
          throw error;
        },
      }),
    { router: { interceptors: [serverErrors(createLogger("interceptors-test", "error"))] } },
  );
  try {
    await createClient(InventoryService, transport).getProduct({ sku: "KB-001" });
  } catch (caught) {
    return ConnectError.from(caught).code;
  }
  throw new Error("the call succeeded");
}

/** An error as node-postgres raises it for a server error response. */
function postgresError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, severity: "FATAL" });
}

describe("serverErrors", () => {
  it("answers UNAVAILABLE (retryable) when Postgres goes away or a dependency does not answer", async () => {
    expect(await codeFor(postgresError("57P01", "terminating connection due to administrator command"))).toBe(Code.Unavailable);
    expect(await codeFor(postgresError("57P03", "the database system is starting up"))).toBe(Code.Unavailable);
    expect(await codeFor(new Error("timeout exceeded when trying to connect"))).toBe(Code.Unavailable);
    expect(await codeFor(new Error("connect ECONNREFUSED 127.0.0.1:6379"))).toBe(Code.Unavailable);
  });

  it("answers INTERNAL for a bug or any other fault, and passes a ConnectError on as it is", async () => {
    expect(await codeFor(new TypeError("cannot read properties of undefined"))).toBe(Code.Internal);
    expect(await codeFor(postgresError("23505", "duplicate key value violates unique constraint"))).toBe(Code.Internal);
    expect(await codeFor(new ConnectError("no such product", Code.NotFound))).toBe(Code.NotFound);
  });
});
