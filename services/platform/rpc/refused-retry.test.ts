import { Code, ConnectError, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { retryRefusedStreams, wasRefused } from "./refused-retry.js";

const refused = () => new ConnectError("Stream closed with error code NGHTTP2_REFUSED_STREAM", Code.Internal, undefined, undefined, new Error("Stream closed with error code NGHTTP2_REFUSED_STREAM"));
const request = (signal = new AbortController().signal) => ({ stream: false, signal }) as unknown as UnaryRequest;
const response = {} as UnaryResponse;

/** Runs a unary call through the interceptor against a server that fails with `failures` in turn, then answers. */
async function call(failures: Error[], signal?: AbortSignal): Promise<{ attempts: number; result: unknown }> {
  let attempts = 0;
  const next = async (): Promise<UnaryResponse> => {
    const failure = failures[attempts++];
    if (failure) throw failure;
    return response;
  };
  const intercepted = retryRefusedStreams()(next as Parameters<ReturnType<typeof retryRefusedStreams>>[0]);
  const result: unknown = await intercepted(request(signal)).catch((error: unknown) => error);
  return { attempts, result };
}

describe("retryRefusedStreams", () => {
  it("sends a refused call again until it is answered, at most three times", async () => {
    expect(await call([refused(), refused()])).toEqual({ attempts: 3, result: response });
    const { attempts, result } = await call([refused(), refused(), refused(), refused()]);
    expect(attempts).toBe(3);
    expect(wasRefused(result)).toBe(true);
  });

  it("does not send again a call the server may have run, nor one the caller gave up", async () => {
    const unavailable = new ConnectError("busy", Code.Unavailable);
    expect(await call([unavailable])).toEqual({ attempts: 1, result: unavailable });
    // A server's own answer that only quotes a refused stream: the server ran the call.
    const answered = new ConnectError("upstream: stream closed with error code REFUSED_STREAM", Code.Unavailable);
    answered.isWireError = true;
    expect(await call([answered])).toEqual({ attempts: 1, result: answered });
    const aborted = new AbortController();
    aborted.abort();
    expect((await call([refused()], aborted.signal)).attempts).toBe(1);
  });
});
